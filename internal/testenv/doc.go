// Package testenv starts real services for tests, in process or on loopback,
// and stops them when the test ends (docs/development.md, "Real services in
// tests"). Nothing here relies on a service that happens to be running.
//
// It is imported only by _test.go files. It may import "testing" but no
// test-only library (assertion or leak-check packages), so linking it never
// drags those into a binary.
package testenv
