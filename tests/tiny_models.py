"""Tiny random chat models saved as parameters files, for the tests of commands that load models from disk."""

from llmedu.checkpoint import save_params
from llmedu.data import tokenizer_to_text
from llmedu.model import ModelConfig, init_params
from llmedu.tokenizer import CHAT_SPECIAL_TOKENS, BPETokenizer, sample_text


def tiny_tokenizer(n_chars: int = 3000, vocab_size: int = 280) -> BPETokenizer:
    """A BPE tokenizer with the chat markers, trained on the start of the built-in sample text."""
    return BPETokenizer.train(sample_text()[:n_chars], vocab_size, special_tokens=list(CHAT_SPECIAL_TOKENS))


def save_tiny_models(folder, seeds: dict, max_seq_len: int, tokenizer=None) -> list:
    """One random one-layer model per name in ``seeds`` ({name: seed}), saved as ``folder/name.safetensors``."""
    tokenizer = tokenizer or tiny_tokenizer()
    config = ModelConfig(vocab_size=len(tokenizer), dim=16, n_layers=1, n_heads=2, n_kv_heads=2, hidden_dim=32,
                         max_seq_len=max_seq_len)
    paths = []
    for name, seed in seeds.items():
        paths.append(folder / f"{name}.safetensors")
        save_params(paths[-1], init_params(config, seed=seed), config, tokenizer_text=tokenizer_to_text(tokenizer))
    return paths
