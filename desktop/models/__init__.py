"""Model files and runtimes: bundled weights, GGUF checks, llama.cpp and OpenAI-compatible
endpoints. No Qt here."""
