"""llmedu: a large language model built from scratch, one lesson at a time.

Each module holds one idea and names the lesson that introduces it:

- ``bpe``          plain-Python byte-pair encoding, the readable reference (lesson 01)
- ``pretokenize``  the GPT-4 split pattern as a fast state machine (lesson 01)
- ``bpe_fast``     BPE training and encoding compiled with Numba (lesson 01)
- ``tokenizer``    ``BPETokenizer``: training, special tokens, save/load (lesson 01)
- ``model``        ``ModelConfig``, parameters, the readable numpy forward pass (lesson 02)
- ``kernels``      the same forward pass compiled with Numba, and one decoding step (lesson 02)
- ``generate``     the KV cache, sampling, and the streaming ``generate`` loop (lesson 02)
- ``checkpoint``   the parameters file (safetensors) and llama2.c export (lessons 00, 02)
- ``backward``     the backward pass, op by op, written by hand (lesson 03)
- ``optim``        AdamW, the cosine schedule, gradient clipping (lesson 03)
- ``data``, ``char_tokenizer``  text files, splits, batches; a character-level tokenizer
- ``train``        the training loop with checkpoints and resume (``llmedu pretrain``); ``train_state`` its files
- ``sample``       generate text from a trained run (``llmedu sample``)
- ``world``        the synthetic world the speedrun pretrains on, with its fact table (lesson 03)
- ``evaluate``     bits per byte vs gzip/bz2/lzma, fact recall, hallucination (lesson 03)
- ``display``      notebook views: tokens, the tokenizer playground, the sampling explorer
- ``check``        the exercise checks called from the notebooks (``checks/``, one module per lesson)
- ``course``       lesson generation from ``solutions/``; ``grade`` grades submissions
- ``speedrun``     the course pipeline end to end (``llmedu speedrun``)
- ``base_model``   the shipped base model in ``assets/``: load it, its card (lessons 00, 03)
- ``threads``      how many BLAS and Numba threads, from the CPUs this process may use (lesson 02)
- ``chat``         the chat template, its loss mask, the reply loop (lesson 04); ``chat_cli`` is ``llmedu chat``
- ``sft_data``, ``sft``, ``sft_eval``  conversations from the world, packed for the training loop
  (``llmedu sft``), replies judged against the fact table (lesson 04); ``sft_stage`` the speedrun's stage
- ``chat_model``   the shipped chat model in ``assets/`` (lessons 04-07)
- ``grade_kernel``, ``pytest_plugin``  grading inside the submission's kernel; ``pytest --llmedu-grade``
"""

__version__ = "0.1.0"
