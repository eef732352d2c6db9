"""A deterministic discrete-event simulator of sticky traffic, driving the real analysis and
planner (`stickyguard simulate`)."""
