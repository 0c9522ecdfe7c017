"""Autobahn TestSuite harness for portside: echo server, client driver and runner."""
