"""FasterSeg reimplementation: everything shared by the search, train and latency stages."""
