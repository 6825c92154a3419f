"""Pure logic with no I/O: key names, option handling, records, codecs, script specs."""
