from collections import defaultdict

from django.db import migrations, models

from emporium.core.usernames import username_fold


def fill_username_keys(apps, schema_editor):  # type: ignore[no-untyped-def]
    User = apps.get_model("accounts", "User")
    owners: dict[str, list[str]] = defaultdict(list)
    for user in User.objects.only("pk", "username").iterator():
        key = username_fold(user.username)
        owners[key].append(user.username)
        User.objects.filter(pk=user.pk).update(username_key=key)
    clashes = {key: names for key, names in owners.items() if len(names) > 1}
    if clashes:
        # Two accounts that one typed name could reach: an operator must rename one.
        raise RuntimeError(f"Usernames that fold to the same name, rename all but one: {clashes}")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_case_insensitive_login_manager"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="username_key",
            field=models.CharField(editable=False, max_length=150, null=True),
        ),
        migrations.RunPython(fill_username_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="user",
            name="username_key",
            field=models.CharField(editable=False, max_length=150),
        ),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.UniqueConstraint(
                fields=("username_key",), name="user_username_key_unique"
            ),
        ),
    ]
