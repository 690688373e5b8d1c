"""A book's images as a unit kind (--images): one claimed scene in, one image file out. A
scene's unit is claimable once its chapter is done. See `units.UnitKind`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from imaginize.coordination import manifest as mf
from imaginize.coordination.atomic import write_atomic
from imaginize.coordination.claims import StopFlag, record_failure
from imaginize.coordination.store import ManifestStore
from imaginize.events import EventSink, ImageFinished, Notice
from imaginize.guides.images import (
    IMAGES_DIR,
    ImageOptions,
    ImageStore,
    detect_extension,
    image_stem,
    prompt_for,
    unit_parts,
    wanted_units,
)
from imaginize.model import Book, ImageRecord
from imaginize.pacing.pace import SharedPace
from imaginize.workers.spec import WorkerSpec

# What a scene's work gives its publish: the prompt, the image's bytes and their extension.
Drawn = tuple[str, bytes, str]


class ImageUnits:
    name = "image"

    def __init__(
        self,
        spec: WorkerSpec,
        book: Book,
        options: ImageOptions,
        pacer: SharedPace | None,
        sink: EventSink,
    ) -> None:
        # Imported here: the launcher imports this module, and `openai` costs it a second.
        from imaginize.analysis.openai.images import ImageGenerator

        self.spec, self.book, self.sink = spec, book, sink
        self.generator = ImageGenerator(
            model=options.model,
            api_key=spec.settings.provider.api_key,
            base_url=spec.settings.provider.base_url,
            size=options.size,
            quality=options.quality,
            timeout=spec.settings.chapter_timeout,
            pacer=pacer,
        )
        out, lifetime = Path(spec.out_dir), spec.settings.claims.lock_lifetime
        # The image manifest's operations (`images`) and, as for every kind, its plain store.
        self.images = ImageStore(out, lock_lifetime=lifetime)
        self.store = self.images.manifest
        self.beats = ImageStore(out, lock_lifetime=lifetime).manifest
        self._chapters = ManifestStore(out, lock_lifetime=lifetime)
        self._pacer = pacer
        # Whether this worker has made sure every finished chapter's units are listed.
        self._synced = False

    def wanted(self) -> tuple[int, ...]:
        """Units of the selected chapters (--chapters) that are done: a unit of a chapter
        being redone (--force) waits. Once the chapters are settled, the units of chapters
        finished before --images was asked for (or by a worker that died between publishing
        a chapter and listing its scenes) are listed first."""
        spec = self.spec
        chapters = self._chapters.read()
        if chapters is None:
            return ()
        attempts = spec.settings.claims.max_attempts
        if not self._synced and mf.settled(chapters, attempts, spec.chapters):
            self.images.sync_units(spec.chapters or [c.number for c in self.book.chapters])
            self._synced = True
        units = self.images.read()
        if units is None:
            return ()
        done = {e.number for e in chapters.chapters if e.status is mf.Status.COMPLETED}
        wanted = wanted_units(units, spec.chapters)
        listed = [e.number for e in units.chapters] if wanted is None else wanted
        return tuple(n for n in listed if unit_parts(n)[0] in done)

    def ready(self, stop: StopFlag) -> float:
        """Waits out a pause the server asked for, unclaimed."""
        return self._pacer.pause_left() if self._pacer is not None else 0.0

    def start(self, claim: mf.Claim, worker_id: str) -> Callable[[], Drawn]:
        out, model = Path(self.spec.out_dir), self.generator.model

        def draw() -> Drawn:
            _, prompt = prompt_for(out, claim.number, model)
            data = self.generator.generate(prompt)
            return prompt, data, detect_extension(data)

        return draw

    def fail(self, claim: mf.Claim, problem: Exception) -> None:
        attempts = self.spec.settings.claims.max_attempts
        record_failure(self.store, claim, attempts, problem, self.sink)

    def publish(self, claim: mf.Claim, result: Drawn, worker_id: str, started: float) -> bool:
        """Stage the image outside the lock; the publish writes its record and renames it into
        place, fenced by the claim's token."""
        prompt, data, ext = result
        chapter, scene = unit_parts(claim.number)
        stem = image_stem(chapter, scene)
        folder = Path(self.spec.out_dir) / IMAGES_DIR
        staged = folder / f".{stem}.{claim.token}.{ext}"
        write_atomic(staged, data, sync_dir=False)  # publishing renames it and syncs the folder
        file = f"{IMAGES_DIR}/{stem}.{ext}"
        record = ImageRecord(scene, file, prompt, self.generator.model, self.generator.size)
        lost = self.images.publish_image(
            claim.number, claim.token, staged, folder / f"{stem}.{ext}", record
        )
        if lost is not None:
            self.sink(Notice(f"image {stem}: {lost}; image discarded"))
            return False
        seconds = time.monotonic() - started
        self.sink(ImageFinished(chapter, scene, record.file, seconds, worker_id))
        return True

    def notices(self) -> list[str]:
        return []
