import { lexicographicSortSchema } from 'graphql';
import { builder } from './builder.js';
import './creator.js';
import './creator-platform.js';
import './link-structure.js';
import { isolateEntityResolution } from './entities.js';

/**
 * The federation version the subgraph speaks. The oldest Federation 2 spec has everything used here
 * (`@key`), so every Federation 2 router and composer accepts it; bump it only for a newer directive.
 */
export const federationLinkUrl = 'https://specs.apollo.dev/federation/v2.0';

/** The API schema without federation additions, sorted so the printed SDL diffs cleanly. */
export const schema = lexicographicSortSchema(builder.toSchema());

/**
 * What the app serves: the API schema plus the federation fields a router uses (`_service`,
 * `_entities`). Pothos sorts it; its `_service { sdl }` keeps `@link` and `@key`. Each representation in
 * `_entities` resolves on its own, so a bad one fails only its item.
 */
export const subgraphSchema = isolateEntityResolution(
  builder.toSubGraphSchema({ linkUrl: federationLinkUrl, federationDirectives: ['@key'] }),
);
