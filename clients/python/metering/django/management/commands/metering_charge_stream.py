"""python manage.py metering_charge_stream [--after-sequence N] [--cursor-file PATH]

Follows the service's charge stream and sends ``new_charge_created`` for every recorded charge.
With --cursor-file it resumes after the sequence stored there and stores each one handled."""
import os

from django.core.management.base import BaseCommand

from metering.django import run_charge_stream


class Command(BaseCommand):
    help = "Send new_charge_created for every charge the Metering service records (follows WatchCharges)."

    def add_arguments(self, parser):
        parser.add_argument("--after-sequence", type=int, default=None, help="resume after this sequence (default: from now)")
        parser.add_argument("--cursor-file", default=None, help="file holding the last sequence handled; read at start, written after each event")

    def handle(self, *args, after_sequence=None, cursor_file=None, **options):
        if after_sequence is None and cursor_file and os.path.exists(cursor_file):
            with open(cursor_file) as f:
                text = f.read().strip()
            after_sequence = int(text) if text else None

        def save(event):
            if cursor_file:
                with open(cursor_file + ".tmp", "w") as f:
                    f.write(str(event.sequence))
                os.replace(cursor_file + ".tmp", cursor_file)

        run_charge_stream(after_sequence=after_sequence, on_event=save)
