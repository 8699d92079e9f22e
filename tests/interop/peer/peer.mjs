// A Fedify-based ActivityPub peer for Entraide's interop tests (tests/interop/).
//
// One Person actor, `peer`, served by a real @fedify/fedify Federation (in-memory KV, no message
// queue: activities are processed and sent inline, so a failed delivery surfaces in the control
// API's answer instead of being retried in the background). Everything the peer receives is
// recorded together with what Fedify decided about its signature; a small JSON control API on the
// same port lets the tests make the peer act (follow, post, like, announce, delete, fetch, look up).
//
// Environment:
//   PEER_PORT             port to listen on, on 127.0.0.1 only (required)
//   PEER_FIRST_KNOCK      "rfc9421" (Fedify's default) or "draft-cavage-http-signatures-12": the
//                         HTTP signature spec tried first on outgoing requests (double-knocking)
//   PEER_MAX_LIFETIME_S   the process exits by itself after this many seconds (default 900)
//   PEER_LOG_LEVEL        LogTape level for Fedify's own logs on stderr (default "warning")
//
// The process also exits when its standard input closes, so a test run that dies cannot leave
// it behind. It never contacts anything but the URLs the tests give it (all on loopback).
//
// Control API (JSON; GET reads, POST acts with a JSON body):
//   GET  /_control/health                      actor IRI, Fedify and Node versions
//   GET  /_control/received                    inbox log: activity, signature spec, verified, status
//   GET  /_control/sent                        outgoing HTTP requests (deliveries and signed fetches)
//   GET  /_control/served                      documents the peer served (not /_control)
//   GET  /_control/followers | /_control/following
//   POST /_control/follow    {target}          Follow an actor (by its IRI)
//   POST /_control/unfollow  {target}          Undo that Follow
//   POST /_control/post      {content, name?, inReplyTo?, to?: [actor IRIs]}   Create{Note}
//   POST /_control/update    {object, content} Update{Note} of one of the peer's notes
//   POST /_control/delete    {object}          Delete{Tombstone} of one of the peer's notes
//   POST /_control/like      {object}          Like, sent to the object's author
//   POST /_control/announce  {object}          Announce, to the peer's followers and the author
//   POST /_control/undo      {activity}        Undo of an activity the peer sent (Like, Announce…)
//   POST /_control/join      {event, message?} Join of an event (Mobilizon's participation request),
//                                              to the event's organiser (its attributedTo) only;
//                                              the organiser's Accept/Reject shows in `received`
//   POST /_control/vote      {question, choice}
//                                              a poll vote, Mastodon's shape: Create{Note{name:
//                                              choice, inReplyTo: question}} with no content, to the
//                                              question's author only (not in the outbox)
//   GET  /_control/fetch?url=…&signed=0|1      Fedify's document loader (signed: as `peer`)
//   GET  /_control/lookup?url=…&signed=0|1     Fedify's lookupObject, parsed and re-serialised
//   GET  /_control/webfinger?resource=…        Fedify's lookupWebFinger (see README.md: acct: is
//                                              always looked up over https)
//   GET  /_control/jrd?resource=…&server=…     plain GET of {server}/.well-known/webfinger
//   GET  /_control/verify_proofs?url=…         fetch url (a document, or a collection whose embedded
//                                              first page lists documents) and check each FEP-8b32
//                                              proof with Fedify's verifyProof and verifyObject
//
// Inbox records of activities with an embedded object also carry `object`: what Fedify parsed
// (its vocab class, name, summary, content, attributedTo, inReplyTo; for a Question its
// exclusive/inclusive options with their reply counts, voters, endTime, closed; for an Event its
// startTime and endTime), or `objectError`.
//
// Fedify's unsigned document loader (`fetch?signed=0`, `verify_proofs`) caches what it fetched for
// 5 minutes (its default kvCache); `fetch?signed=1` always reads the current document.

import { Temporal } from "@js-temporal/polyfill";
import { configure, getConsoleSink } from "@logtape/logtape";
import { createFederation, MemoryKvStore, generateCryptoKeyPair, verifyObject, verifyProof } from "@fedify/fedify";
import {
  Accept,
  Activity,
  Announce,
  Create,
  DataIntegrityProof,
  Delete,
  Endpoints,
  Event,
  Follow,
  Join,
  Like,
  Note,
  Object as ASObject,
  Person,
  PUBLIC_COLLECTION,
  Question,
  Reject,
  Tombstone,
  Undo,
  Update,
  isActor,
} from "@fedify/vocab";
import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";

// ---------------------------------------------------------------------------------------------
// Configuration

const HOST = "127.0.0.1";
const PORT = Number(process.env.PEER_PORT);
if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) {
  console.error("PEER_PORT must be a TCP port number");
  process.exit(2);
}
const ORIGIN = `http://${HOST}:${PORT}`;
const FIRST_KNOCK = process.env.PEER_FIRST_KNOCK ?? "rfc9421";
if (!["rfc9421", "draft-cavage-http-signatures-12"].includes(FIRST_KNOCK)) {
  console.error(`PEER_FIRST_KNOCK must be rfc9421 or draft-cavage-http-signatures-12, not ${FIRST_KNOCK}`);
  process.exit(2);
}
const MAX_LIFETIME_S = Number(process.env.PEER_MAX_LIFETIME_S ?? 900);
const MAX_BODY_BYTES = 1024 * 1024;
const IDENTIFIER = "peer";
const FEDIFY_VERSION = JSON.parse(
  readFileSync(new URL("./node_modules/@fedify/fedify/package.json", import.meta.url)),
).version;

await configure({
  sinks: { stderr: getConsoleSink() },
  contextLocalStorage: new AsyncLocalStorage(),
  loggers: [
    { category: "fedify", lowestLevel: process.env.PEER_LOG_LEVEL ?? "warning", sinks: ["stderr"] },
    { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
  ],
});

// ---------------------------------------------------------------------------------------------
// State (in memory, for the life of the process)

let seq = 0;
const received = []; // one entry per POST to an inbox
const sent = []; // one entry per outgoing HTTP request (deliveries, fetches, WebFinger)
const served = []; // one entry per document served to someone else
const notes = new Map(); // note IRI -> { note: Note, create: Create, recipients: [Recipient], deleted }
const activities = new Map(); // IRI of an activity the peer sent -> { activity, recipients }
const followers = new Map(); // follower IRI -> Recipient ({ id, inboxId, endpoints })
const following = new Map(); // followed IRI -> { follow: IRI, state: "pending" | "accepted" | "rejected" }

/** The spec an HTTP request is signed with, decided as Fedify's verifier decides it. */
function signatureSpecOf(headers) {
  if (headers.has("signature-input")) return "rfc9421";
  if (headers.has("signature")) return "draft-cavage-http-signatures-12";
  return null;
}

/** All headers of a request (what a signature may cover), lower-cased, for the logs and payloads. */
function headersOf(headers) {
  return Object.fromEntries(headers.entries());
}

function parseJsonOrText(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// Record every outgoing request: Fedify uses the global fetch for deliveries, signed fetches,
// key fetches and WebFinger, so wrapping it shows exactly what went on the wire.
const originalFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const request = new Request(input, init);
  const body = request.method === "GET" || request.method === "HEAD" ? null : await request.clone().text();
  const entry = {
    seq: ++seq,
    at: new Date().toISOString(),
    method: request.method,
    url: request.url,
    signatureSpec: signatureSpecOf(request.headers),
    headers: headersOf(request.headers),
    accept: request.headers.get("accept"),
    body: body == null ? null : parseJsonOrText(body),
    bodyText: body, // the exact bytes sent (kept for the recorded payloads)
    status: null,
  };
  sent.push(entry);
  try {
    const response = await originalFetch(request);
    entry.status = response.status;
    // Keep the start of an error answer (e.g. Entraide's problem+json saying why a signature failed).
    if (response.status >= 400) entry.error = (await response.clone().text()).slice(0, 500);
    return response;
  } catch (error) {
    entry.error = String(error);
    throw error;
  }
};

// ---------------------------------------------------------------------------------------------
// The federation

const federation = createFederation({
  kv: new MemoryKvStore(),
  origin: ORIGIN,
  // Loopback peers only: without this Fedify refuses to fetch 127.0.0.1 (its SSRF guard).
  allowPrivateAddress: true,
  firstKnock: FIRST_KNOCK,
});

const rsaKeyPair = await generateCryptoKeyPair("RSASSA-PKCS1-v1_5");
const ed25519KeyPair = await generateCryptoKeyPair("Ed25519");

federation
  .setActorDispatcher("/users/{identifier}", async (ctx, identifier) => {
    if (identifier !== IDENTIFIER) return null;
    const keys = await ctx.getActorKeyPairs(identifier);
    return new Person({
      id: ctx.getActorUri(identifier),
      preferredUsername: identifier,
      name: "Fedify peer",
      summary: "A Fedify-served actor used by Entraide's interop tests.",
      url: ctx.getActorUri(identifier),
      published: Temporal.Instant.from("2026-01-01T00:00:00Z"),
      manuallyApprovesFollowers: false,
      discoverable: true,
      inbox: ctx.getInboxUri(identifier),
      outbox: ctx.getOutboxUri(identifier),
      followers: ctx.getFollowersUri(identifier),
      following: ctx.getFollowingUri(identifier),
      endpoints: new Endpoints({ sharedInbox: ctx.getInboxUri() }),
      publicKey: keys[0].cryptographicKey, // the RSA key: draft-cavage and RFC 9421 signatures
      assertionMethods: keys.map((key) => key.multikey), // FEP-521a: RSA and Ed25519 Multikeys
    });
  })
  .mapHandle((_ctx, username) => (username === IDENTIFIER ? IDENTIFIER : null))
  .setKeyPairsDispatcher(async (_ctx, identifier) =>
    identifier === IDENTIFIER ? [rsaKeyPair, ed25519KeyPair] : [],
  );

federation.setObjectDispatcher(Note, "/users/{identifier}/notes/{id}", (ctx, values) => {
  if (values.identifier !== IDENTIFIER) return null;
  const entry = notes.get(ctx.getObjectUri(Note, values).href);
  // Fedify answers 404 for a deleted note (an object dispatcher cannot answer 410).
  return entry == null || entry.deleted ? null : entry.note;
});

federation.setOutboxDispatcher("/users/{identifier}/outbox", (_ctx, identifier) => {
  if (identifier !== IDENTIFIER) return null;
  const items = [...notes.values()].filter((entry) => !entry.deleted && !entry.direct).map((entry) => entry.create);
  return { items: items.reverse() }; // newest first, inline (no paging)
});

federation.setFollowersDispatcher("/users/{identifier}/followers", (_ctx, identifier) => {
  if (identifier !== IDENTIFIER) return null;
  return { items: [...followers.values()] };
});

federation.setFollowingDispatcher("/users/{identifier}/following", (_ctx, identifier) => {
  if (identifier !== IDENTIFIER) return null;
  return {
    items: [...following.entries()].filter(([, f]) => f.state === "accepted").map(([iri]) => new URL(iri)),
  };
});

/** Mark the inbox record of the request being handled (passed as Fedify's context data). */
function mark(ctx, activity, verified, extra = {}) {
  const record = ctx.data?.record;
  if (record == null) return;
  Object.assign(record, {
    verified,
    activityId: activity.id?.href ?? null,
    type: activity.constructor.name,
    actor: activity.actorId?.href ?? null,
    ...extra,
  });
}

federation
  .setInboxListeners("/users/{identifier}/inbox", "/inbox")
  // Only called once Fedify has verified the request (HTTP signature, LD signature or proof).
  .on(Follow, async (ctx, follow) => {
    mark(ctx, follow, true);
    if (follow.objectId?.href !== ctx.getActorUri(IDENTIFIER).href || follow.actorId == null) return;
    const loader = await ctx.getDocumentLoader({ identifier: IDENTIFIER });
    const follower = await follow.getActor({ documentLoader: loader, contextLoader: ctx.contextLoader });
    if (follower == null || follower.inboxId == null) return;
    const recipient = { id: follower.id, inboxId: follower.inboxId, endpoints: follower.endpoints };
    followers.set(follower.id.href, recipient);
    const accept = new Accept({
      id: newActivityId(),
      actor: ctx.getActorUri(IDENTIFIER),
      object: follow,
      to: follower.id,
    });
    try {
      await send(ctx, [recipient], accept);
    } catch (error) {
      // Our answer failing must not turn the Follow's own answer into a 500 (a queued Fedify
      // would answer 202 and retry the Accept in the background): keep the reason instead.
      if (ctx.data?.record != null) ctx.data.record.sendError = String(error);
    }
  })
  .on(Accept, async (ctx, accept) => {
    mark(ctx, accept, true);
    const followId = accept.objectId?.href;
    for (const entry of following.values()) {
      if (entry.follow === followId) entry.state = "accepted";
    }
  })
  .on(Reject, async (ctx, reject) => {
    mark(ctx, reject, true);
    for (const entry of following.values()) {
      if (entry.follow === reject.objectId?.href) entry.state = "rejected";
    }
  })
  .on(Undo, async (ctx, undo) => {
    mark(ctx, undo, true);
    // The undone activity may be embedded or only referenced (then fetched; a failure is no error).
    const object = await undo
      .getObject({ documentLoader: ctx.documentLoader, crossOrigin: "ignore" })
      .catch(() => null);
    if (object instanceof Follow && undo.actorId != null) followers.delete(undo.actorId.href);
  })
  // Everything else (Create, Update, Delete, Announce, Like…) is only recorded, with what Fedify
  // parsed of its object.
  .on(Activity, async (ctx, activity) => {
    mark(ctx, activity, true);
    const record = ctx.data?.record;
    // Embedded objects only: describing never fetches anything (a fetch would show in `sent`).
    if (record == null || record.body?.object == null || typeof record.body.object !== "object") return;
    try {
      const options = { documentLoader: ctx.documentLoader, contextLoader: ctx.contextLoader };
      record.object = await describe(await activity.getObject(options), options);
    } catch (error) {
      record.objectError = String(error);
    }
  })
  // Called when Fedify could NOT verify the request: recorded, then answered 401 by Fedify.
  .onUnverifiedActivity(async (ctx, activity, reason) => {
    mark(ctx, activity, false, { unverifiedReason: reason.type });
  })
  .onError(async (ctx, error) => {
    const record = ctx.data?.record;
    if (record != null) record.error = String(error);
  });

/** What Fedify's vocabulary read from an object (for the tests' assertions). */
async function describe(object, options) {
  if (object == null) return null;
  const text = (value) => (value == null ? null : value.toString());
  const result = {
    class: object.constructor.name,
    id: object.id?.href ?? null,
    name: text(object.name),
    summary: text(object.summary),
    content: text(object.content),
    attributedTo: object.attributionId?.href ?? null,
    inReplyTo: object.replyTargetId?.href ?? null,
  };
  if (object instanceof Question) {
    const read = async (iterable) => {
      const options_ = [];
      for await (const option of iterable) {
        const replies = await option.getReplies(options);
        options_.push({ class: option.constructor.name, name: text(option.name), totalItems: replies?.totalItems ?? null });
      }
      return options_;
    };
    result.exclusiveOptions = await read(object.getExclusiveOptions(options));
    result.inclusiveOptions = await read(object.getInclusiveOptions(options));
    result.voters = object.voters;
    result.endTime = text(object.endTime);
    result.closed = object.closed == null || typeof object.closed === "boolean" ? object.closed : text(object.closed);
  }
  if (object instanceof Event) {
    result.startTime = text(object.startTime);
    result.endTime = text(object.endTime);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Acting: the control API

const PUBLIC = PUBLIC_COLLECTION;

function newActivityId() {
  return new URL(`${ORIGIN}/users/${IDENTIFIER}/activities/${randomUUID()}`);
}

async function signedLoader(ctx) {
  return await ctx.getDocumentLoader({ identifier: IDENTIFIER });
}

/** Send `activity` as the peer to `recipients`, inline; throws on a failed delivery. */
async function send(ctx, recipients, activity) {
  const unique = new Map(recipients.map((recipient) => [recipient.id.href, recipient]));
  if (unique.size === 0) return;
  await ctx.sendActivity({ identifier: IDENTIFIER }, [...unique.values()], activity, {
    preferSharedInbox: true,
    immediate: true,
  });
  activities.set(activity.id.href, { activity, recipients: [...unique.values()] });
}

/** The actor at `iri`, fetched signed, as a Recipient. */
async function recipientFor(ctx, iri) {
  const actor = await ctx.lookupObject(iri, { documentLoader: await signedLoader(ctx) });
  if (!isActor(actor) || actor.inboxId == null) throw new HttpError(422, `${iri} is not an actor with an inbox`);
  return { id: actor.id, inboxId: actor.inboxId, endpoints: actor.endpoints };
}

/** The author (attributedTo) of the object at `iri`, as a Recipient. */
async function authorOf(ctx, iri) {
  const object = await ctx.lookupObject(iri, { documentLoader: await signedLoader(ctx) });
  if (object == null) throw new HttpError(422, `${iri} could not be fetched`);
  const author = object.attributionId ?? object.actorId;
  if (author == null) throw new HttpError(422, `${iri} has no attributedTo`);
  return await recipientFor(ctx, author.href);
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function ownNote(iri) {
  const entry = notes.get(iri);
  if (entry == null) throw new HttpError(404, `${iri} is not one of the peer's notes`);
  return entry;
}

async function compact(object, ctx) {
  return await object.toJsonLd({ format: "compact", contextLoader: ctx.contextLoader });
}

const actions = {
  async follow(ctx, { target }) {
    const recipient = await recipientFor(ctx, target);
    const follow = new Follow({ id: newActivityId(), actor: ctx.getActorUri(IDENTIFIER), object: recipient.id });
    following.set(recipient.id.href, { follow: follow.id.href, state: "pending" });
    await send(ctx, [recipient], follow);
    return { id: follow.id.href, activity: await compact(follow, ctx) };
  },

  async unfollow(ctx, { target }) {
    const entry = following.get(target);
    if (entry == null) throw new HttpError(404, `the peer does not follow ${target}`);
    const { activity: follow, recipients } = activities.get(entry.follow);
    const undo = new Undo({ id: newActivityId(), actor: ctx.getActorUri(IDENTIFIER), object: follow });
    await send(ctx, recipients, undo);
    following.delete(target);
    return { id: undo.id.href, activity: await compact(undo, ctx) };
  },

  async post(ctx, { content, name, inReplyTo, to = [] }) {
    const me = ctx.getActorUri(IDENTIFIER);
    const recipients = [...followers.values()];
    for (const iri of to) recipients.push(await recipientFor(ctx, iri));
    if (inReplyTo != null) recipients.push(await authorOf(ctx, inReplyTo));
    const noteId = ctx.getObjectUri(Note, { identifier: IDENTIFIER, id: randomUUID() });
    const ccs = [ctx.getFollowersUri(IDENTIFIER), ...recipients.map((r) => r.id)];
    const published = Temporal.Now.instant();
    const note = new Note({
      id: noteId,
      attribution: me,
      to: PUBLIC,
      ccs,
      name: name ?? null,
      content,
      replyTarget: inReplyTo == null ? null : new URL(inReplyTo),
      published,
      url: noteId,
    });
    const create = new Create({ id: new URL(`${noteId.href}#create`), actor: me, object: note, to: PUBLIC, ccs, published });
    notes.set(noteId.href, { note, create, recipients, deleted: false });
    await send(ctx, recipients, create);
    return { id: noteId.href, create: create.id.href, activity: await compact(create, ctx) };
  },

  async update(ctx, { object, content }) {
    const entry = ownNote(object);
    const me = ctx.getActorUri(IDENTIFIER);
    entry.note = entry.note.clone({ content, updated: Temporal.Now.instant() });
    entry.create = entry.create.clone({ object: entry.note });
    const update = new Update({ id: newActivityId(), actor: me, object: entry.note, to: PUBLIC, ccs: entry.note.ccIds });
    await send(ctx, [...followers.values(), ...entry.recipients], update);
    return { id: update.id.href, activity: await compact(update, ctx) };
  },

  async delete(ctx, { object }) {
    const entry = ownNote(object);
    const me = ctx.getActorUri(IDENTIFIER);
    entry.deleted = true;
    const del = new Delete({
      id: newActivityId(),
      actor: me,
      object: new Tombstone({ id: new URL(object) }),
      to: PUBLIC,
      ccs: entry.note.ccIds,
    });
    await send(ctx, [...followers.values(), ...entry.recipients], del);
    return { id: del.id.href, activity: await compact(del, ctx) };
  },

  async like(ctx, { object }) {
    const author = await authorOf(ctx, object);
    const like = new Like({ id: newActivityId(), actor: ctx.getActorUri(IDENTIFIER), object: new URL(object), to: author.id });
    await send(ctx, [author], like);
    return { id: like.id.href, activity: await compact(like, ctx) };
  },

  async announce(ctx, { object }) {
    const me = ctx.getActorUri(IDENTIFIER);
    const author = await authorOf(ctx, object);
    const announce = new Announce({
      id: newActivityId(),
      actor: me,
      object: new URL(object),
      to: PUBLIC,
      ccs: [author.id, ctx.getFollowersUri(IDENTIFIER)],
      published: Temporal.Now.instant(),
    });
    await send(ctx, [author, ...followers.values()], announce);
    return { id: announce.id.href, activity: await compact(announce, ctx) };
  },

  // A vote as Mastodon sends one: a content-less Note named after the option, in reply to the
  // Question, addressed and delivered to its author only.
  async vote(ctx, { question, choice }) {
    const me = ctx.getActorUri(IDENTIFIER);
    const author = await authorOf(ctx, question);
    const noteId = ctx.getObjectUri(Note, { identifier: IDENTIFIER, id: randomUUID() });
    const note = new Note({ id: noteId, attribution: me, name: choice, replyTarget: new URL(question), to: author.id });
    const create = new Create({ id: new URL(`${noteId.href}#create`), actor: me, object: note, to: author.id });
    notes.set(noteId.href, { note, create, recipients: [author], deleted: false, direct: true });
    await send(ctx, [author], create);
    return { id: noteId.href, create: create.id.href, activity: await compact(create, ctx) };
  },

  // A participation request as Mobilizon sends one: Join{object: event IRI}, to the organiser
  // only, with the optional message in `content` (Mobilizon also sets participationMessage,
  // which Fedify's vocabulary does not know).
  async join(ctx, { event, message }) {
    const organiser = await authorOf(ctx, event);
    const join = new Join({
      id: newActivityId(),
      actor: ctx.getActorUri(IDENTIFIER),
      object: new URL(event),
      to: organiser.id,
      content: message ?? null,
    });
    await send(ctx, [organiser], join);
    return { id: join.id.href, activity: await compact(join, ctx) };
  },

  async undo(ctx, { activity }) {
    const entry = activities.get(activity);
    if (entry == null) throw new HttpError(404, `${activity} was not sent by the peer`);
    const undo = new Undo({ id: newActivityId(), actor: ctx.getActorUri(IDENTIFIER), object: entry.activity });
    await send(ctx, entry.recipients, undo);
    return { id: undo.id.href, activity: await compact(undo, ctx) };
  },
};

const reads = {
  health: async () => ({
    ok: true,
    actor: `${ORIGIN}/users/${IDENTIFIER}`,
    fedify: FEDIFY_VERSION,
    node: process.version,
    firstKnock: FIRST_KNOCK,
  }),
  received: async () => received,
  sent: async () => sent,
  served: async () => served,
  followers: async () => [...followers.keys()],
  following: async () => Object.fromEntries(following),

  async fetch(ctx, params) {
    const loader = params.get("signed") === "1" ? await signedLoader(ctx) : ctx.documentLoader;
    try {
      const remote = await loader(params.get("url"));
      return { ok: true, documentUrl: remote.documentUrl, document: remote.document };
    } catch (error) {
      return { ok: false, error: String(error) };
    }
  },

  async lookup(ctx, params) {
    const signed = params.get("signed") === "1";
    const options = signed ? { documentLoader: await signedLoader(ctx) } : {};
    let object;
    try {
      object = await ctx.lookupObject(params.get("url"), options);
    } catch (error) {
      return { ok: false, error: String(error) };
    }
    if (object == null) return { ok: false, error: "lookupObject returned null" };
    const result = { ok: true, class: object.constructor.name, id: object.id?.href, json: await compact(object, ctx) };
    if (isActor(object)) {
      // What Fedify itself reads from our actor: its keys, inbox and shared inbox.
      const key = await object.getPublicKey(options);
      result.publicKey = key == null ? null : { id: key.id?.href, owner: key.ownerId?.href };
      result.assertionMethods = [];
      for await (const multikey of object.getAssertionMethods(options)) {
        result.assertionMethods.push({
          id: multikey.id?.href,
          algorithm: multikey.publicKey?.algorithm?.name ?? null,
        });
      }
      result.inbox = object.inboxId?.href ?? null;
      result.sharedInbox = object.endpoints?.sharedInbox?.href ?? null;
      result.preferredUsername = object.preferredUsername?.toString() ?? null;
    }
    return result;
  },

  async webfinger(ctx, params) {
    try {
      return { ok: true, jrd: await ctx.lookupWebFinger(params.get("resource")) };
    } catch (error) {
      return { ok: false, error: String(error) };
    }
  },

  // FEP-8b32 proofs checked by Fedify itself: verifyProof (the proof, with the key its
  // verificationMethod names, fetched by Fedify) and verifyObject (every proof valid and every
  // attributedTo/actor authenticated by a proof's key controller).
  async verify_proofs(ctx, params) {
    const url = params.get("url");
    const fetched = await ctx.documentLoader(url);
    const document = fetched.document;
    const items = Array.isArray(document?.first?.orderedItems) ? document.first.orderedItems : [document];
    const options = { documentLoader: ctx.documentLoader, contextLoader: ctx.contextLoader };
    const results = [];
    for (const item of items) {
      const result = { id: item?.id ?? null, hasProof: item?.proof != null };
      try {
        // The proof as Fedify's DataIntegrityProof, read in the Data Integrity context (the
        // document's own @context need not define the proof terms for verifyProof).
        const { "@context": _ignored, ...proofJson } = item.proof;
        const proof = await DataIntegrityProof.fromJsonLd(
          { "@context": "https://w3id.org/security/data-integrity/v1", ...proofJson },
          options,
        );
        result.proof = {
          cryptosuite: proof.cryptosuite,
          verificationMethod: proof.verificationMethodId?.href ?? null,
          proofPurpose: proof.proofPurpose,
          created: proof.created?.toString() ?? null,
        };
        const key = await verifyProof(item, proof, options);
        result.proofVerified = key != null;
        result.key = key == null ? null : { id: key.id?.href ?? null, controller: key.controllerId?.href ?? null };
      } catch (error) {
        result.proofError = String(error);
      }
      // Fedify's vocabulary has no class for a type it does not know (Endorsement): its
      // Object.fromJsonLd throws. verifyObject only uses the class to read the object's
      // attributions and proofs, and checks each proof over the original JSON, so the object is
      // read as a plain Object (its type replaced for that reading only).
      const asObject = { fromJsonLd: (json, o) => ASObject.fromJsonLd({ ...json, type: "Object" }, o) };
      try {
        const object = await asObject.fromJsonLd(item, options);
        // The proofs Fedify's JSON-LD reading finds (verifyObject checks those, and needs one by
        // each attributedTo's key).
        result.parsedProofs = 0;
        for await (const _proof of object.getProofs(options)) result.parsedProofs += 1;
        result.objectVerified = (await verifyObject(asObject, item, options)) != null;
      } catch (error) {
        result.objectError = String(error);
      }
      results.push(result);
    }
    return { ok: true, documentUrl: fetched.documentUrl, items: results };
  },

  // Fedify's WebFinger client always uses https for acct: resources; on an http loopback
  // node the JRD is fetched directly (what lookupWebFinger would do over https).
  async jrd(_ctx, params) {
    const url = new URL("/.well-known/webfinger", params.get("server"));
    url.searchParams.set("resource", params.get("resource"));
    const response = await fetch(url, { headers: { Accept: "application/jrd+json" } });
    return {
      ok: response.ok,
      status: response.status,
      contentType: response.headers.get("content-type"),
      jrd: response.ok ? await response.json() : await response.text(),
    };
  },
};

async function control(request, path) {
  const ctx = federation.createContext(new URL(ORIGIN), {});
  const name = path.slice("/_control/".length);
  try {
    let result;
    if (request.method === "GET" && name in reads) {
      result = await reads[name](ctx, new URL(request.url).searchParams);
    } else if (request.method === "POST" && name in actions) {
      result = await actions[name](ctx, await request.json());
    } else {
      return Response.json({ error: `no control ${request.method} ${name}` }, { status: 404 });
    }
    return Response.json(result);
  } catch (error) {
    const status = error instanceof HttpError ? error.status : 502;
    return Response.json({ error: String(error), stack: error?.stack }, { status });
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP server: node:http <-> fetch API, on 127.0.0.1 only

const INBOX_PATHS = new Set(["/inbox", `/users/${IDENTIFIER}/inbox`]);

async function handle(request) {
  const path = new URL(request.url).pathname;
  if (path.startsWith("/_control/")) return await control(request, path);

  let record = null;
  if (request.method === "POST" && INBOX_PATHS.has(path)) {
    const bodyText = await request.clone().text();
    record = {
      seq: ++seq,
      at: new Date().toISOString(),
      path,
      signatureSpec: signatureSpecOf(request.headers),
      headers: headersOf(request.headers),
      contentType: request.headers.get("content-type"),
      body: parseJsonOrText(bodyText),
      bodyText,
      verified: null, // set by the inbox listeners: true (verified) or false (unverified)
      status: null,
    };
    received.push(record);
  }
  const response = await federation.fetch(request, {
    contextData: { record },
    onNotFound: () => new Response("Not found", { status: 404 }),
    onNotAcceptable: () => new Response("Not acceptable", { status: 406 }),
  });
  if (record != null) record.status = response.status;
  if (request.method === "GET") {
    const bodyText = await response.clone().text();
    served.push({
      seq: ++seq,
      at: new Date().toISOString(),
      path: path + new URL(request.url).search,
      accept: request.headers.get("accept"),
      signatureSpec: signatureSpecOf(request.headers),
      status: response.status,
      contentType: response.headers.get("content-type"),
      body: parseJsonOrText(bodyText),
      bodyText,
    });
  }
  return response;
}

function toRequest(req, body) {
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  return new Request(new URL(req.url, ORIGIN), { method: req.method, headers, body: hasBody ? body : undefined });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      res.writeHead(413).end();
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", async () => {
    if (res.headersSent) return;
    try {
      const response = await handle(toRequest(req, Buffer.concat(chunks)));
      const headers = {};
      response.headers.forEach((value, name) => {
        headers[name] = value;
      });
      res.writeHead(response.status, headers);
      res.end(Buffer.from(await response.arrayBuffer()));
    } catch (error) {
      console.error("peer: unhandled error", error);
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(error));
    }
  });
});

function stop(reason) {
  console.error(`peer: stopping (${reason})`);
  server.close();
  // Do not wait for keep-alive connections: the tests are done with us.
  setTimeout(() => process.exit(0), 200).unref();
}

process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
process.stdin.on("end", () => stop("stdin closed"));
process.stdin.resume();
setTimeout(() => stop(`lifetime of ${MAX_LIFETIME_S} s reached`), MAX_LIFETIME_S * 1000).unref();

server.listen(PORT, HOST, () => {
  console.log(`READY ${ORIGIN}/users/${IDENTIFIER} fedify=${FEDIFY_VERSION} node=${process.version}`);
});
