"""peekwidgets: look inside a trained PyTorch network."""
