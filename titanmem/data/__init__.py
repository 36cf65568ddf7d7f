"""Corpora from package registries, tokenizers and synthetic long-context tasks."""

from .corpora import CORPORA, CorpusNotFoundError, Document, load_corpus, split_documents
from .llama2 import build_llama2_tokenizer
from .loader import BatchLoader, eval_batches
from .shards import TokenDataset, prepare_dataset
from .tokenizers import (
    ByteTokenizer, HFTokenizer, KmerTokenizer, NucleotideTokenizer, TiktokenTokenizer, Tokenizer, get_tokenizer,
)

__all__ = [
    "CORPORA", "BatchLoader", "ByteTokenizer", "CorpusNotFoundError", "Document", "HFTokenizer", "KmerTokenizer",
    "NucleotideTokenizer", "TiktokenTokenizer", "TokenDataset", "Tokenizer", "build_llama2_tokenizer", "eval_batches", "get_tokenizer", "load_corpus",
    "prepare_dataset", "split_documents",
]
