import type { DocumentNode } from 'graphql';
import { LRUCache } from 'lru-cache';

/**
 * A parsed document holds its whole token list and AST: about 50 bytes of heap for each character of its source (108 KB
 * for a 2 KB query). Yoga's own caches count documents (1,024, for an hour), not bytes, so documents within every limit
 * could hold hundreds of megabytes. These hold the same documents, for as long, up to an estimated size.
 */
const heapBytesPerSourceCharacter = 64;
const documentCacheBytes = 64 * 1024 * 1024;
/** A document that failed to parse keeps its source (the key) and one error. */
const errorCacheBytes = 16 * 1024 * 1024;
const errorOverheadBytes = 2_048;
const maxDocuments = 1_024;
const ttlMs = 60 * 60 * 1_000;

/** Yoga's `parserAndValidationCache`, bounded by an estimate of the memory it holds (validation results go with their document). */
export function boundedParserCaches(): {
  documentCache: LRUCache<string, DocumentNode>;
  errorCache: { get(source: string): unknown; set(source: string, error: unknown): void; readonly cache: LRUCache<string, object> };
} {
  const errors = new LRUCache<string, object>({
    max: maxDocuments,
    ttl: ttlMs,
    maxSize: errorCacheBytes,
    sizeCalculation: (_error, source) => source.length * 2 + errorOverheadBytes,
  });
  return {
    documentCache: new LRUCache<string, DocumentNode>({
      max: maxDocuments,
      ttl: ttlMs,
      maxSize: documentCacheBytes,
      sizeCalculation: (_document, source) => Math.max(1, source.length * heapBytesPerSourceCharacter),
    }),
    errorCache: {
      get: (source) => errors.get(source),
      set(source, error) {
        // Until its stack is read, an error keeps V8's call sites, and through their closures the whole request that
        // raised it (body, context, parsed parameters): reading it once leaves a string. Cached, that was ~100 KB each.
        if (error instanceof Error) void error.stack;
        if (typeof error === 'object' && error !== null) errors.set(source, error);
      },
      cache: errors,
    },
  };
}
