"""POST /batch: the Azure portal's request batching, each request dispatched through the management app."""
