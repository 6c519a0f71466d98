"""Invite tokens: 256 random bits, handed out once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


def mint_token() -> str:
    """A URL-safe token with 256 bits of entropy."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The only form of a token that is ever stored or looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison, so the response time says nothing about the stored hash."""
    return hmac.compare_digest(hash_token(token), stored_hash)


def looks_like_token(token: str) -> bool:
    """Reject junk early (no database work for a string that cannot be one of ours)."""
    if not 32 <= len(token) <= 64:
        return False
    return all(c.isascii() and (c.isalnum() or c in "-_") for c in token)
