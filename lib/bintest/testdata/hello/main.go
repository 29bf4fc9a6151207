// Command hello is a main package for bintest's own tests to build.
package main

func main() {}
