// A minimal Fedify app, written as a Fedify developer writes one: target (e) of bench_inbox.py.
//
// One actor with a key pair, inbox listeners for Follow, Undo, Create, Update, Delete, Like and
// Announce that keep what they receive in memory, an in-memory KV and no message queue (so a
// listener runs before the 202, as in the interop peer (d)). Unlike the interop peer it records
// no request, no header, no body text and no outgoing request, re-reads no embedded object
// through the document loader, and configures no logging. It uses the @fedify/fedify package of
// tests/interop/peer (run `npm ci --prefix tests/interop/peer` once) and that peer's Node binary.
//
// Environment: FEDIFY_PORT (required; it listens on 127.0.0.1 only), FEDIFY_MAX_LIFETIME_S
// (default 600). It exits when its standard input closes, on SIGTERM, or at the end of its lifetime.
// GET /_stats answers how many activities the listeners stored (the benchmark checks it).

import http from "node:http";
import { fileURLToPath, pathToFileURL } from "node:url";
import path from "node:path";

const PEER_MODULES = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "interop", "peer", "node_modules");
const load = (pkg) => import(pathToFileURL(path.join(PEER_MODULES, pkg, "dist", "mod.js")).href);
const { createFederation, MemoryKvStore, generateCryptoKeyPair } = await load("@fedify/fedify");
const { Accept, Announce, Create, Delete, Endpoints, Follow, Like, Note, Person, Undo, Update } =
  await load("@fedify/vocab");

const PORT = Number(process.env.FEDIFY_PORT);
if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) {
  console.error("FEDIFY_PORT must be a TCP port number");
  process.exit(2);
}
const ORIGIN = `http://127.0.0.1:${PORT}`;
const MAX_LIFETIME_S = Number(process.env.FEDIFY_MAX_LIFETIME_S ?? 600);
const IDENTIFIER = "me";

// What the app keeps: posts by IRI, followers, and the other activities it received.
const posts = new Map();
const followers = new Map();
const activities = [];

const federation = createFederation({
  kv: new MemoryKvStore(),
  allowPrivateAddress: true, // the benchmark's key server is on 127.0.0.1
});
const keyPair = await generateCryptoKeyPair("RSASSA-PKCS1-v1_5");

federation
  .setActorDispatcher("/users/{identifier}", async (ctx, identifier) => {
    if (identifier !== IDENTIFIER) return null;
    const keys = await ctx.getActorKeyPairs(identifier);
    return new Person({
      id: ctx.getActorUri(identifier),
      preferredUsername: identifier,
      name: "Minimal Fedify app",
      inbox: ctx.getInboxUri(identifier),
      endpoints: new Endpoints({ sharedInbox: ctx.getInboxUri() }),
      publicKey: keys[0].cryptographicKey,
    });
  })
  .setKeyPairsDispatcher(async (_ctx, identifier) => (identifier === IDENTIFIER ? [keyPair] : []));

/** Keep a received post (its IRI, author, content and date). */
async function storePost(activity) {
  const object = await activity.getObject();
  if (!(object instanceof Note) || object.id == null) return;
  posts.set(object.id.href, {
    author: activity.actorId?.href ?? null,
    content: object.content?.toString() ?? null,
    published: object.published?.toString() ?? null,
  });
}

federation
  .setInboxListeners("/users/{identifier}/inbox", "/inbox")
  .on(Follow, async (ctx, follow) => {
    if (follow.actorId == null || follow.objectId?.href !== ctx.getActorUri(IDENTIFIER).href) return;
    const follower = await follow.getActor();
    if (follower == null) return;
    followers.set(follower.id.href, follower);
    await ctx.sendActivity(
      { identifier: IDENTIFIER },
      follower,
      new Accept({ actor: follow.objectId, object: follow }),
    );
  })
  .on(Undo, async (_ctx, undo) => {
    if (undo.actorId != null) followers.delete(undo.actorId.href);
  })
  .on(Create, async (_ctx, create) => storePost(create))
  .on(Update, async (_ctx, update) => storePost(update))
  .on(Delete, async (_ctx, del) => {
    if (del.objectId != null) posts.delete(del.objectId.href);
  })
  .on(Like, async (_ctx, like) => activities.push({ type: "Like", id: like.id?.href }))
  .on(Announce, async (_ctx, announce) => activities.push({ type: "Announce", id: announce.id?.href }));

// node:http <-> the fetch API that federation.fetch speaks (what @hono/node-server does).
function toRequest(req, body) {
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  return new Request(new URL(req.url, ORIGIN), { method: req.method, headers, body: hasBody ? body : undefined });
}

async function handle(request) {
  if (new URL(request.url).pathname === "/_stats") {
    return Response.json({ posts: posts.size, followers: followers.size, activities: activities.length });
  }
  return await federation.fetch(request, { contextData: undefined });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", async () => {
    try {
      const response = await handle(toRequest(req, Buffer.concat(chunks)));
      res.writeHead(response.status, Object.fromEntries(response.headers.entries()));
      res.end(Buffer.from(await response.arrayBuffer()));
    } catch (error) {
      console.error("fedify_minimal: unhandled error", error);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    }
  });
});

function stop(reason) {
  console.error(`fedify_minimal: stopping (${reason})`);
  server.close();
  setTimeout(() => process.exit(0), 200).unref();
}

process.on("SIGTERM", () => stop("SIGTERM"));
process.stdin.on("end", () => stop("stdin closed"));
process.stdin.resume();
setTimeout(() => stop(`lifetime of ${MAX_LIFETIME_S} s reached`), MAX_LIFETIME_S * 1000).unref();
server.listen(PORT, "127.0.0.1", () => console.log(`READY ${ORIGIN}/users/${IDENTIFIER}`));
