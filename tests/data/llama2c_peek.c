/* A second, independent reader of llama2.c's version-0 checkpoint layout,
   used by tests/test_checkpoint.py to check llmedu's export from outside Python.
   It walks the float arrays in the documented order and prints:
     line 1: the 7 header ints
     line 2: the file size the header implies, and the real file size
     line 3: tok_embeddings[0], norm[0], output[0], output[last]  (%.9g) */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s CHECKPOINT\n", argv[0]); return 2; }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    int h[7]; /* dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len */
    if (fread(h, sizeof(int), 7, f) != 7) { fprintf(stderr, "short header\n"); return 1; }
    long dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv_heads = h[4];
    long vocab = labs(h[5]), seq = h[6], head = dim / heads, kv_dim = kv_heads * head;
    int shared = h[5] > 0; /* positive vocab_size: the classifier is the embedding */

    /* offsets in floats, counted from the first float after the header */
    long at = vocab * dim;          /* after tok_embeddings */
    at += layers * dim;             /* attention_norm */
    at += 2 * layers * dim * dim;   /* wq, wo */
    at += 2 * layers * kv_dim * dim;/* wk, wv */
    at += layers * dim;             /* ffn_norm */
    at += 3 * layers * hidden * dim;/* w1, w2, w3 */
    long norm = at;
    at += dim + 2 * seq * (head / 2); /* final norm, then the RoPE cos and sin tables */
    long cls = shared ? 0 : at;
    long n = shared ? at : at + vocab * dim;

    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    for (int i = 0; i < 7; i++) printf("%d ", h[i]);
    printf("\n%ld %ld\n", 28 + 4 * n, size);
    if (size != 28 + 4 * n) return 3; /* never index past a wrong-sized file */

    float *w = malloc(n * sizeof(float));
    fseek(f, 28, SEEK_SET);
    if (!w || fread(w, sizeof(float), n, f) != (size_t)n) { fprintf(stderr, "short data\n"); return 1; }
    fclose(f);
    printf("%.9g %.9g %.9g %.9g\n", w[0], w[norm], w[cls], w[cls + vocab * dim - 1]);
    free(w);
    return 0;
}
