"""The core layer: concepts every other part shares and that import nothing above them (numpy
and the standard library only): tool families and the timestamp parser. See docs/ARCHITECTURE.md."""
