"""OAuthStateUse: each OAuth state's nonce, recorded when its callback completes (single use)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("connectors", "0005_outbox_trigger"),
    ]

    operations = [
        migrations.CreateModel(
            name="OAuthStateUse",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("nonce", models.CharField(max_length=64, unique=True)),
                ("used_at", models.DateTimeField(db_index=True)),
            ],
        ),
    ]
