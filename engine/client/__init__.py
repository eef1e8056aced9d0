"""What the language server may import: the engine seen from outside, no torch."""
