"""Rendering: charts of errors, and (with a generator) latents -> frames -> GIF/MP4."""
