import { creatorPlatforms, type CreatorPlatform } from '../link-structure/model.js';
import { builder } from './builder.js';

const platformDescriptions: Record<CreatorPlatform, string> = {
  SHORT_VIDEO: 'Short video (短视频): the default, and the only platform the deprecated upstream endpoint answers.',
  LIVE_STREAMING: 'Live streaming (直播).',
  PICTURE_TEXT: 'Picture and text posts (图文).',
  SHORT_DRAMA: 'Short drama (短剧).',
};

export const CreatorPlatformRef = builder.enumType('CreatorPlatform', {
  description: 'The content channel a creator’s link structure is measured on.',
  values: Object.fromEntries(
    creatorPlatforms.map((platform) => [platform, { value: platform, description: platformDescriptions[platform] }]),
  ),
});
