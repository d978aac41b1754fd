"""memray: a memory profiler for Python."""
