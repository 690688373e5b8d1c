"""A worker's image work (--images): one claimed scene in, one image file out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imaginize.cancel import Token
from imaginize.coordination.atomic import write_atomic
from imaginize.coordination.claims import Abandoned, Heartbeat, StopFlag, record_failure, within
from imaginize.coordination.manifest import Claim
from imaginize.errors import AuthenticationError, ServerPaused, ServerUnreachable
from imaginize.events import EventSink, ImageFinished, Notice
from imaginize.guides.images import (
    IMAGES_DIR,
    ImageOptions,
    ImageStore,
    detect_extension,
    image_stem,
    prompt_for,
    unit_parts,
)
from imaginize.model import ImageRecord
from imaginize.pacing.pace import Pacer

if TYPE_CHECKING:
    from imaginize.analysis.openai.images import ImageGenerator
    from imaginize.workers.spec import WorkerSpec


@dataclass
class ImageJob:
    """One book's image units as a worker sees them."""

    store: ImageStore
    generator: ImageGenerator
    # Whether this worker has made sure every finished chapter's units are listed.
    synced: bool = False


def prepare_images(spec: WorkerSpec, options: ImageOptions, pacer: Pacer | None) -> ImageJob:
    # Imported here: the launcher imports this module, and `openai` costs it a second.
    from imaginize.analysis.openai.images import ImageGenerator

    generator = ImageGenerator(
        model=options.model,
        api_key=spec.settings.provider.api_key,
        base_url=spec.settings.provider.base_url,
        size=options.size,
        quality=options.quality,
        timeout=spec.settings.chapter_timeout,
        pacer=pacer,
    )
    store = ImageStore(Path(spec.out_dir), lock_lifetime=spec.settings.claims.lock_lifetime)
    return ImageJob(store, generator)


def work_on_image(
    spec: WorkerSpec,
    job: ImageJob,
    claim: Claim,
    worker_id: str,
    sink: EventSink,
    stop: StopFlag | None = None,
) -> bool:
    """Make the claimed scene's image and publish it; False when it failed or was lost."""
    chapter, scene = unit_parts(claim.number)
    started = time.monotonic()
    beats = ImageStore(Path(spec.out_dir), lock_lifetime=spec.settings.claims.lock_lifetime)
    model = job.generator.model

    def make() -> tuple[str, bytes]:
        _, prompt = prompt_for(Path(spec.out_dir), claim.number, model)
        return prompt, job.generator.generate(prompt)

    try:
        # A Token: an image given up on has its request's connection and slot let go at once.
        with Heartbeat(
            beats, claim.number, claim.token, spec.settings.claims.heartbeat, on_lost=Token()
        ) as beat:
            prompt, data = within(
                spec.settings.chapter_timeout,
                make,
                f"image-{claim.number}",
                cancel=beat.lost,
                stop=stop,
            )
        ext = detect_extension(data)
    except Abandoned:  # told to stop at once: given back, the attempt not counted
        job.store.release(claim.number, claim.token)
        return False
    except (AuthenticationError, ServerPaused, KeyboardInterrupt):
        job.store.release(claim.number, claim.token)
        raise
    except ServerUnreachable as away:  # not the image's fault: nothing spent, all wait
        job.store.release(claim.number, claim.token)
        sink(Notice(f"{away}; every worker waits for it, no attempt spent"))
        return False
    except Exception as exc:  # this image failed; the worker goes on with the next unit
        record_failure(job.store, claim, spec.settings.claims.max_attempts, exc, sink)
        return False
    stem = image_stem(chapter, scene)
    folder = Path(spec.out_dir) / IMAGES_DIR
    staged = folder / f".{stem}.{claim.token}.{ext}"
    write_atomic(staged, data, sync_dir=False)  # publishing renames it and syncs the folder
    record = ImageRecord(scene, f"{IMAGES_DIR}/{stem}.{ext}", prompt, model, job.generator.size)
    lost = job.store.publish_image(
        claim.number, claim.token, staged, folder / f"{stem}.{ext}", record
    )
    if lost is not None:
        sink(Notice(f"image {stem}: {lost}; image discarded"))
        return False
    sink(ImageFinished(chapter, scene, record.file, time.monotonic() - started, worker_id))
    return True
