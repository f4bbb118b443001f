/* The program the real_gcc test compiles with gcc under heapkeeper, then runs (also under
 * heapkeeper). Enough C to keep the compiler's optimisers busy; deterministic output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
  char key[16];
  unsigned value;
  struct entry* next;
};

#define BUCKETS 257

static unsigned hash(const char* text) {
  unsigned h = 2166136261u;
  while (*text) h = (h ^ (unsigned char)*text++) * 16777619u;
  return h;
}

static int by_value(const void* a, const void* b) {
  const struct entry *x = *(const struct entry*const*)a, *y = *(const struct entry*const*)b;
  if (x->value != y->value) return x->value < y->value ? 1 : -1;
  return strcmp(x->key, y->key);
}

int main(void) {
  struct entry* table[BUCKETS] = {0};
  size_t count = 0;
  for (unsigned i = 0; i < 20000; ++i) {
    char key[16];
    snprintf(key, sizeof key, "k%u", (i * 2654435761u) % 5000);
    unsigned h = hash(key) % BUCKETS;
    struct entry* e = table[h];
    while (e != NULL && strcmp(e->key, key) != 0) e = e->next;
    if (e == NULL) {
      e = calloc(1, sizeof *e);
      strcpy(e->key, key);
      e->next = table[h];
      table[h] = e;
      ++count;
    }
    e->value += i % 97;
  }
  struct entry** all = malloc(count * sizeof *all);
  size_t n = 0;
  for (int b = 0; b < BUCKETS; ++b)
    for (struct entry* e = table[b]; e != NULL; e = e->next) all[n++] = e;
  qsort(all, n, sizeof *all, by_value);
  printf("%zu distinct keys\n", n);
  for (size_t i = 0; i < 5; ++i) printf("%s %u\n", all[i]->key, all[i]->value);
  for (size_t i = 0; i < n; ++i) free(all[i]);
  free(all);
  return 0;
}
