"""Reporters: turn what the reader gives (grouped records, statistics) into
text, tables, trees and HTML. They render; they never read raw events."""
