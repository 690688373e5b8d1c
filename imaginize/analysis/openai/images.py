"""Illustrations from the OpenAI images API (`gpt-image-1`, `dall-e-3`, `dall-e-2`), paced and
translated like every other call."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from imaginize.analysis.openai import client as openai_client
from imaginize.analysis.openai.errors import StatusError, call
from imaginize.errors import ProviderError
from imaginize.pacing.pace import Pacer

# Codes the API uses when its safety system refuses a prompt.
_SAFETY_CODES = {"content_policy_violation", "moderation_blocked", "image_generation_user_error"}


class ImageGenerator:
    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None = None,
        size: str | None = None,
        quality: str | None = None,
        timeout: float = 300.0,
        pacer: Pacer | None = None,
    ) -> None:
        self.model = model
        self.size = size or "1024x1024"
        self._quality = quality
        self._pacer = pacer
        self._client = openai_client.build(api_key, base_url, timeout)

    def generate(self, prompt: str) -> bytes:
        """The image's bytes, as the server sent them (PNG, JPEG or WebP)."""
        params: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": 1}
        params["size"] = self.size
        if self._quality:
            params["quality"] = self._quality
        if self.model.startswith("dall-e"):
            # gpt-image-1 always answers base64 and refuses the parameter; DALL-E needs it.
            params["response_format"] = "b64_json"
        try:
            response = call(self._pacer, lambda: self._client.images.generate(**params))
        except StatusError as exc:
            if exc.code in _SAFETY_CODES or "safety" in str(exc).lower():
                raise ProviderError(f"rejected by the safety system: {exc}") from None
            raise
        try:
            encoded = response.data[0].b64_json
            if not encoded:
                raise ValueError("no image data")
            return base64.b64decode(encoded, validate=True)
        except (AttributeError, IndexError, TypeError, ValueError, binascii.Error) as exc:
            raise ProviderError(f"malformed image response: {exc}", retryable=True) from None
