import { lexicographicSortSchema } from 'graphql';
import { builder } from './builder.js';
import './creator.js';
import './creator-platform.js';
import './link-structure.js';

/** The API schema, sorted so the printed SDL diffs cleanly. */
export const schema = lexicographicSortSchema(builder.toSchema());
