// Types of @paywall-auth/wasm: the anonymous sign-in subset of the
// reference paywall auth client, backed by the paywall-auth Rust core.

/**
 * A user as the backend sent it (docs/protocol.md §2.2): the keys below are
 * the ones the client reads; any other key the backend sent is kept as it
 * came, `null`s included.
 */
export interface AuthUser {
  id: string;
  /** `null` (or absent) for anonymous users. */
  email?: string | null;
  /** Absent means `false`; the client adds no key the backend left out. */
  is_anonymous?: boolean;
  name?: string | null;
  avatar?: string | null;
  country?: string | null;
  [key: string]: unknown;
}

/** The session, in the exact shape stored under `pw-{paywallId}-auth-v1`. */
export interface AuthSession {
  access_token: string;
  refresh_token: string;
  /** Expiry of the access token, Unix epoch **milliseconds**. */
  expires_at: number;
  user: AuthUser;
}

export type AuthChangeEvent =
  | 'INITIAL_SESSION'
  | 'SIGNED_IN'
  | 'SIGNED_OUT'
  | 'TOKEN_REFRESHED'
  | 'USER_UPDATED';

export type AuthChangeListener = (event: AuthChangeEvent, session: AuthSession | null) => void;

/**
 * Where the client keeps its two records. Each method may return its value
 * directly or a Promise of it; the client awaits whatever it gets and
 * acknowledges a write only once it is done.
 */
export interface StorageAdapter {
  getItem(key: string): string | null | Promise<string | null>;
  setItem(key: string, value: string): void | Promise<void>;
  removeItem(key: string): void | Promise<void>;
  /**
   * Optional: report changes made elsewhere (other tabs, other contexts);
   * `null` means removed. Echoes of the client's own writes are tolerated.
   * Returns the function that stops watching.
   */
  watch?(key: string, callback: (value: string | null) => void): () => void;
}

export type FetchLike = (url: string, init: {
  method: string;
  headers: Record<string, string>;
  body?: string;
  credentials: 'omit';
  /** Never followed: a 3xx (or an `opaqueredirect`) fails the call with `network_error`. */
  redirect: 'manual';
}) => Promise<Response>;

export interface AuthClientOptions {
  /** The paywall id (`[A-Za-z0-9._~-]+`). */
  paywallId: string;
  /** The API origin, e.g. `https://pay.vendor.com`; any path in it is ignored. */
  apiOrigin: string;
  /** Default: `localStorage` when usable, else an in-memory map. */
  storage?: StorageAdapter;
  /** Default: the global `fetch`. */
  fetch?: FetchLike;
  /**
   * Allow a plain `http://` apiOrigin for a host that is not loopback.
   * Off by default: every request carries a token or a password, which
   * plain http sends in clear text. `http://localhost`, `127.0.0.0/8` and
   * `[::1]` need no opt-in.
   */
  allowInsecureHttp?: boolean;
}

export interface SignInAnonymouslyOptions {
  /** String→string metadata sent when a new user is created. */
  userMeta?: Record<string, string>;
  /** Create a new anonymous user even if one is signed in or resumable. */
  forceNewAnon?: boolean;
  captchaToken?: string;
}

export interface UpgradeAnonymousToEmailOptions {
  email: string;
  password: string;
  userMeta?: Record<string, string>;
  /** Makes a retried upgrade safe; concurrent upgrades with the same key share one request. */
  idempotencyKey?: string;
}

export type UpgradeAnonymousResult =
  | { kind: 'updated'; session: AuthSession }
  | { kind: 'confirmation_required'; email: string };

export interface SignOutOptions {
  /** Also forget (and revoke) the anonymous account; a plain sign-out keeps it resumable. */
  forgetAnonymous?: boolean;
}

/**
 * Loads the wasm; await it once before `new AuthClient(...)`. Under Node it
 * is already loaded and this resolves at once. `input` (browser entry
 * only) overrides where the `.wasm` is fetched from.
 */
export function init(input?: string | URL | Request | Response | BufferSource | WebAssembly.Module): Promise<void>;

/** What every failed call rejects with (and the constructor throws). */
export class PaywallError extends Error {
  constructor(code: string, message: string, status?: number);
  readonly name: 'PaywallError';
  /**
   * Stable slug (README.md, "Error codes", lists them all): `invalid_config`,
   * `not_initialized`, `invalid_argument`, `capacity_exceeded`,
   * `network_error`, `invalid_response`, `not_authenticated`,
   * `not_anonymous`, `upgrade_in_progress`, `superseded`, `storage_failed`,
   * `busy`, `aborted`, or the server's own code (`anonymous_disabled`, …,
   * `http_<status>` when it sent none).
   */
  code: string;
  /** HTTP status for errors that came with one. */
  status: number | undefined;
}

export class AuthClient {
  /**
   * @throws {PaywallError} `invalid_config` when `paywallId` or `apiOrigin` is missing or unusable
   * (plain `http://` to a host that is not loopback needs `allowInsecureHttp: true`);
   * `not_initialized` before `init()` resolved (browsers).
   */
  constructor(options: AuthClientOptions);
  /** The current anonymous session, else the resumed stored one, else a new anonymous user. */
  signInAnonymously(options?: SignInAnonymouslyOptions): Promise<AuthSession>;
  /** Attach an email and password to the anonymous account (same user id). */
  upgradeAnonymousToEmail(options: UpgradeAnonymousToEmailOptions): Promise<UpgradeAnonymousResult>;
  signOut(options?: SignOutOptions): Promise<void>;
  /** Rotate the tokens now; `null` when there is no session or the server declared it dead. */
  refresh(): Promise<AuthSession | null>;
  /** A fresh access token (refreshed first if it expires within a minute), or `null` when signed out. */
  getAccessToken(): Promise<string | null>;
  getCachedSession(): AuthSession | null;
  getCachedUser(): AuthUser | null;
  /** Resolves once the stored session has been read. */
  ready(): Promise<void>;
  /**
   * Calls `listener` on every auth change; its first call is always
   * `INITIAL_SESSION` with the session current at that moment. Listener
   * exceptions are caught and logged. Returns the unsubscribe function.
   */
  onAuthChange(listener: AuthChangeListener): () => void;
  /** Stop timers, watches and listeners; pending and later calls reject with `aborted`. */
  destroy(): void;
  /**
   * End the client like `destroy()` and release its wasm memory now. A
   * client dropped without either is ended the same way when it is
   * garbage-collected.
   */
  free(): void;
}

/** `localStorage` (or the given Storage) as a StorageAdapter, watched through `storage` events. */
export function localStorageAdapter(storage?: Storage): StorageAdapter;
/** An in-memory StorageAdapter (one map per call). */
export function memoryStorage(): StorageAdapter;
