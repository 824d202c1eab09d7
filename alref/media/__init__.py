"""Media: video and audio decoding, frame sampling, tiles, box drawing and result writers."""
