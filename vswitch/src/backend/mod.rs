//! Backends: the IO that turns a plan into a running world.
