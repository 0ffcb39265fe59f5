"""Cross-source assets: Pendo and Amplitude activity per account and day, and health."""
