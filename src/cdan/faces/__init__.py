"""Face detection, alignment, AU estimation and the synthetic face generator."""
