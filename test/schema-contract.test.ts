import { isEnumType, isInputObjectType, isInterfaceType, isObjectType, isSpecifiedScalarType, type GraphQLField } from 'graphql';
import { describe, expect, it } from 'vitest';
import { schema } from '../src/graphql/schema.js';

/**
 * The public contract: other software depends on these exact names and types (issues 2, 4 and 6).
 * Regenerating schema/schema.graphql cannot make this pass after a rename or a nullability change.
 */
const contract: Record<string, Record<string, string>> = {
  Query: {
    creator: 'creator(kolId: ID!): Creator!',
    creators: 'creators(kolIds: [ID!]!): [Creator!]!',
  },
  Creator: {
    kolId: 'kolId: ID!',
    linkStructure: 'linkStructure(acceptCache: Boolean, platform: CreatorPlatform = SHORT_VIDEO): LinkStructure',
  },
  LinkStructure: {
    authorLinkType: 'authorLinkType: String',
    buckets: 'buckets: [LinkBucket!]!',
    summary: 'summary: LinkSummary',
    fetchedAt: 'fetchedAt: DateTime!',
    platform: 'platform: CreatorPlatform!',
    source: 'source: String!',
    stale: 'stale: Boolean!',
  },
  LinkBucket: {
    level: 'level: Int!',
    stage: 'stage: LinkStage!',
    value: 'value: SafeInt!',
    proportion: 'proportion: Float!',
    sameIndustryMedian: 'sameIndustryMedian: SafeInt!',
  },
  LinkSummary: {
    value: 'value: SafeInt!',
    rankPercent: 'rankPercent: Float',
    relativeRatio: 'relativeRatio: Float',
  },
};

function signature(field: GraphQLField<unknown, unknown>): string {
  const args = field.args.map((arg) => {
    const fallback = arg.defaultValue === undefined ? '' : ` = ${String(arg.defaultValue)}`;
    return `${arg.name}: ${String(arg.type)}${fallback}`;
  });
  return `${field.name}${args.length ? `(${args.join(', ')})` : ''}: ${String(field.type)}`;
}

describe('the public schema contract', () => {
  it.each(Object.entries(contract))('%s keeps its contracted fields, names, arguments and nullability', (typeName, fields) => {
    const type = schema.getType(typeName);
    expect(isObjectType(type)).toBe(true);
    const actual = isObjectType(type) ? type.getFields() : {};
    for (const [name, expected] of Object.entries(fields)) {
      expect(actual[name] && signature(actual[name])).toBe(expected);
    }
  });

  it('keeps the enums’ values', () => {
    const values = (name: string) => {
      const type = schema.getType(name);
      return isEnumType(type) ? type.getValues().map((value) => value.name).sort() : undefined;
    };
    expect(values('LinkStage')).toEqual(['AWARE', 'FOLLOW', 'INTERESTED', 'LIKE']);
    expect(values('CreatorPlatform')).toEqual(['LIVE_STREAMING', 'PICTURE_TEXT', 'SHORT_DRAMA', 'SHORT_VIDEO']);
  });

  it('describes every type, field, argument and enum value', () => {
    const undescribed: string[] = [];
    const check = (where: string, description: string | null | undefined) => {
      if (!description?.trim()) undescribed.push(where);
    };
    for (const type of Object.values(schema.getTypeMap())) {
      if (type.name.startsWith('__') || isSpecifiedScalarType(type)) continue;
      check(type.name, type.description);
      if (isObjectType(type) || isInterfaceType(type) || isInputObjectType(type)) {
        for (const field of Object.values(type.getFields())) {
          check(`${type.name}.${field.name}`, field.description);
          for (const arg of 'args' in field ? field.args : []) check(`${type.name}.${field.name}(${arg.name})`, arg.description);
        }
      }
      if (isEnumType(type)) for (const value of type.getValues()) check(`${type.name}.${value.name}`, value.description);
    }
    expect(undescribed).toEqual([]);
  });
});
