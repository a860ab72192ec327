"""The weather_forecast table (a frozen copy of poggio_weather.CityForecast at this version)."""

from peewee import *


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Workspace(Base):  # the core's table, referenced only
        pass

    class CityForecast(Base):
        workspace = ForeignKeyField(Workspace, on_delete="CASCADE")
        city = CharField(max_length=80)
        forecast = CharField(max_length=200)
        updated_at = DateTimeField()

        class Meta:
            table_name = "weather_forecast"
            indexes = ((("workspace", "city"), True),)

    db.create_tables([CityForecast])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS weather_forecast")
