import { parseKolId, parseKolIds } from '../link-structure/kol-id.js';
import { defaultCreatorPlatform, linkStructureRequestFor } from '../link-structure/model.js';
import { builder } from './builder.js';
import { CreatorPlatformRef } from './creator-platform.js';
import { LinkStructureRef } from './link-structure.js';

/** A creator is known by its id alone; its data is fetched only when a query asks for it. */
export interface CreatorModel {
  kolId: string;
}

export const CreatorRef = builder.objectRef<CreatorModel>('Creator').implement({
  description: 'A Douyin Xingtu creator (KOL).',
  fields: (t) => ({
    kolId: t.exposeID('kolId', { description: 'The creator’s Xingtu KOL id: 1 to 32 digits.' }),
    linkStructure: t.field({
      type: LinkStructureRef,
      nullable: true,
      description:
        'The creator’s link structure from the upstream. Null, with a coded error at this path, when the upstream fails; the rest of the response still resolves.',
      args: {
        acceptCache: t.arg.boolean({
          description:
            'Let the upstream answer from its own cache (possibly older; the upstream documents it only as "Enable cache"). Default false. Only the deprecated v1 upstream endpoint takes it; the replacement ignores it.',
        }),
        platform: t.arg({
          type: CreatorPlatformRef,
          defaultValue: defaultCreatorPlatform,
          description:
            'The content channel to measure. Platforms other than SHORT_VIDEO need the replacement upstream endpoint: with JUSTONEAPI_LINK_ENDPOINT=v1 they are a BAD_USER_INPUT error.',
        }),
      },
      resolve: (creator, args, context) => context.linkStructureLoader.load(linkStructureRequestFor(creator.kolId, args)),
    }),
  }),
});

// An entity keyed by kolId: other subgraphs return `Creator` references and the router asks this subgraph
// for `linkStructure`. The reference itself costs nothing; `linkStructure` then loads through the
// request's loader exactly as for `creator`/`creators`, so repeated references share one upstream call.
builder.asEntity(CreatorRef, {
  key: builder.selection<{ kolId: string }>('kolId'),
  // A bad kolId throws here; src/graphql/entities.ts makes that fail only this representation.
  resolveReference: (reference) => ({ kolId: parseKolId(reference.kolId) }),
});

builder.queryField('creator', (t) =>
  t.field({
    type: CreatorRef,
    description: 'One creator by KOL id.',
    args: { kolId: t.arg.id({ required: true, description: '1 to 32 ASCII digits.' }) },
    resolve: (_root, args) => ({ kolId: parseKolId(args.kolId) }),
  }),
);

builder.queryField('creators', (t) =>
  t.field({
    type: [CreatorRef],
    description:
      'Several creators by KOL id, in the order given; a repeated id is repeated in the answer but fetched once.',
    args: {
      kolIds: t.arg.idList({ required: true, description: 'At most MAX_KOL_IDS ids (100 by default), each 1 to 32 ASCII digits.' }),
    },
    resolve: (_root, args, context) => parseKolIds(args.kolIds, context.maxKolIds).map((kolId) => ({ kolId })),
  }),
);
