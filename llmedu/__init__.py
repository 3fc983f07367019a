"""llmedu: a large language model built from scratch, one lesson at a time.

Each module holds one idea and names the lesson that introduces it:

- ``bpe``        plain-Python byte-pair encoding, the readable reference (lesson 01)
- ``bpe_fast``   the same algorithm compiled with Numba (lesson 01)
- ``tokenizer``  ``BPETokenizer``: training, special tokens, save/load (lesson 01)
- ``check``      the exercise checks called from the notebooks
- ``course``     lesson generation from ``solutions/`` and grading
- ``speedrun``   the course pipeline end to end (``llmedu speedrun``)
"""

__version__ = "0.1.0"
