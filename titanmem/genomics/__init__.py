"""DNA: nucleotide language models and genomic sequence classification on real genomes (docs/genomics.md).

The genome readers and the nucleotide tokenizers are general pieces and live in the data stratum
(:mod:`titanmem.data.genomes`, :mod:`titanmem.data.tokenizers`), the classification head in the
models stratum (:class:`titanmem.models.TitansForSequenceClassification`); this subpackage holds
what is about genomics only: the fetch commands, the classification tasks in the Genomic Benchmarks
layout, and fine-tuning and scoring a classifier on them.
"""

__all__: list[str] = []
