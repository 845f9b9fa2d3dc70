package server

// TinyRuntime exposes the tests' tiny model to the examples.
var TinyRuntime = tinyRuntime
