"""A task module that cannot be imported in a worker (a broken deploy): its import raises
something other than ImportError."""

raise RuntimeError("this module is broken at import")
