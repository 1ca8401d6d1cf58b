"""What the tests build or drive: hostile files, scanned and EPUB books, forged GGUF files, and the
child-process drivers that kill or trace Sprig mid-work."""
