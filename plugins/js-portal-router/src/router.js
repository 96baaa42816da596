// Routes claim status events to the portal stream of the provider they are
// about, so each provider's portal subscribes to one topic and sees only its
// own claims. The JavaScript twin of plugins/portal-router.
//
// Configuration:
// - `prefix` (default `portal.provider`): destination topics are
//   `<prefix>.<provider id>`.
//
// Built into a `router`-world component by componentize-js (see build.sh).
// Mapping of the WIT contract to JavaScript:
// - `route` is this module's `route` export; returning an array is `ok`,
//   throwing an error whose `payload` is a `plugin-error` value is `err`.
// - `plugin-error` values are `{ tag: 'invalid-event' | 'invalid-config' |
//   'failed', val: string }`.
// - the `log` import's `level` enum is a string such as `'debug'`.

import { emit } from 'switchyard:plugin/log@0.1.0';

/** Default first part of every portal topic name. */
export const DEFAULT_PREFIX = 'portal.provider';

/** Longest topic name Kafka accepts. */
const MAX_TOPIC_LENGTH = 249;

/** Letters, digits and `-`, at least one. */
const PROVIDER_ID = /^[A-Za-z0-9-]+$/;

/** A `plugin-error` the host receives as the `err` side of `route`. */
class PluginError extends Error {
  constructor(tag, message) {
    super(message);
    this.name = 'PluginError';
    this.payload = { tag, val: message };
  }
}

function invalidEvent(message) {
  return new PluginError('invalid-event', message);
}

/** The value of the first config entry with this name, if any. */
function configValue(config, name) {
  const entry = config.find((e) => e.name === name);
  return entry === undefined ? undefined : entry.value;
}

/** Parses the object of a claim status event and checks the fields used. */
function claimStatus(event) {
  const { noun, verb } = event.metadata;
  let object;
  try {
    object = JSON.parse(event.object);
  } catch (error) {
    throw invalidEvent(`object of \`${noun}.${verb}\` is not JSON: ${error.message}`);
  }
  if (object === null || typeof object !== 'object' || Array.isArray(object)) {
    throw invalidEvent(`object of \`${noun}.${verb}\` is not a JSON object`);
  }
  if (typeof object.claim_id !== 'string') {
    throw invalidEvent(`object of \`${noun}.${verb}\` has no string \`claim_id\``);
  }
  const provider = object.provider;
  if (provider === null || typeof provider !== 'object' || Array.isArray(provider)) {
    throw invalidEvent(`object of \`${noun}.${verb}\` has no \`provider\` object`);
  }
  const id = provider.id;
  if (id !== undefined && id !== null && typeof id !== 'string') {
    throw invalidEvent('`provider.id` is not a string');
  }
  return { claimId: object.claim_id, providerId: id ?? undefined };
}

/**
 * Builds the portal topic of a provider, refusing ids that would make an
 * invalid or surprising Kafka topic name.
 */
export function portalTopic(prefix, providerId) {
  if (providerId === undefined || providerId === '') {
    throw invalidEvent('claim status has no `provider.id`');
  }
  if (!PROVIDER_ID.test(providerId)) {
    throw invalidEvent(
      `\`provider.id\` \`${providerId}\` may only hold letters, digits and \`-\` to name a portal topic`,
    );
  }
  const topic = `${prefix}.${providerId}`;
  if (topic.length > MAX_TOPIC_LENGTH) {
    throw new PluginError(
      'invalid-config',
      `portal topic \`${topic}\` is longer than Kafka's ${MAX_TOPIC_LENGTH} characters; shorten \`prefix\``,
    );
  }
  return topic;
}

/** `route` of the `router` world: picks the destinations of one event. */
export function route(event, config) {
  if (event.metadata.noun !== 'claim') {
    return [];
  }
  const prefix = configValue(config, 'prefix') ?? DEFAULT_PREFIX;
  const status = claimStatus(event);
  const topic = portalTopic(prefix, status.providerId);
  emit('debug', 'routed claim status to portal', [
    ['claim_id', status.claimId],
    ['topic', topic],
  ]);
  return [topic];
}
