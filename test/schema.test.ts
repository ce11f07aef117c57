import { describe, expect, it } from 'vitest';
import { staleSchemaFiles } from '../src/schema-files.js';

describe('checked-in schema files', () => {
  it('match the schema the code builds (run `npm run schema` after changing it)', async () => {
    expect(await staleSchemaFiles()).toEqual([]);
  });
});
