"""Sprig's core: loaders, chunking, embeddings, store, retrieval and answering. No Qt here."""
