/* A small "service" with two real leaks, used by scripts/demo.sh.
 *
 * It handles requests by building a response list and caching some results. Two bugs:
 *  - drop_response() frees the list head but forgets the rest of the nodes (a leaked list);
 *  - cache_put() overwrites an existing slot without freeing the old entry (lost strings).
 * Everything else is freed properly before exit, so what heapkeeper reports is exactly the bugs. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
  struct node* next;
  char payload[48];
};

static char* cache[16];

static struct node* build_response(int request) {
  struct node* head = NULL;
  for (int i = 0; i < 4; ++i) {
    struct node* n = malloc(sizeof *n);
    snprintf(n->payload, sizeof n->payload, "request %d part %d", request, i);
    n->next = head;
    head = n;
  }
  return head;
}

static void drop_response(struct node* head) { free(head); /* bug: the other nodes of the list are lost */ }

static void cache_put(int key, const char* value) {
  cache[key % 16] = strdup(value); /* bug: the previous entry is not freed */
}

int main(void) {
  size_t checksum = 0;
  for (int request = 0; request < 100; ++request) {
    struct node* response = build_response(request);
    for (struct node* n = response; n != NULL; n = n->next) checksum += strlen(n->payload);
    if (request % 10 == 0) cache_put(request, response->payload);
    drop_response(response);
  }
  for (int i = 0; i < 16; ++i) free(cache[i]);
  printf("handled 100 requests, checksum %zu\n", checksum);
  return 0;
}
