// Ready Cypher queries for investigators, for Neo4j Browser (http://127.0.0.1:7474/browser/).
// The example parameters fit the bundled example (linkage run examples/reports.csv examples/mentions.csv --neo4j).
//
// How to use one: set its parameters with the ":param" lines shown above it (paste them into the
// Browser's editor and run them, one at a time or together), then paste and run the query. Example:
//     :param agency => 'politie'
//     :param limit => 10
// ":params" (without arguments) shows the parameters that are set; ":params {}" clears them.
// Queries that return nodes, relationships or paths draw a graph; switch to "Table" for the rows.
// Ids come from linkage itself (linkage clusters, linkage cluster ID, linkage entity ID) or from
// the query find_entity below. The graph model is described in docs/graph-model.md.
//
// Format (read by tests/test_neo4j.py, which runs every query here on a small generated set and
// checks the rows): each query starts with a "// name:" line, then comment lines explaining it and
// its ":param" examples, then the query, ending with a semicolon. Values are always parameters.

// name: top_clusters
// The highest-ranked clusters overall (rank 1 = highest score), with agencies and the main reason.
// :param limit => 10
MATCH (c:Cluster)
RETURN c.rank AS rank, c.score AS score, c.cluster_id AS cluster_id, c.n_reports AS reports,
       c.agencies AS agencies, c.reason AS reason
ORDER BY c.rank, c.cluster_id
LIMIT $limit;

// name: top_clusters_for_agency
// "Top clusters for my agency": the highest-ranked clusters routed to one agency, with the routing
// rules and their reasons. $agency is an agency id (politie, woonfraude, burgerzaken, riec, ...; see
// linkage/routing.toml) or a piece of its name, in any case ('fiod', 'woningcorporatie').
// :param agency => 'politie'
// :param limit => 10
MATCH (c:Cluster)-[r:ROUTED_TO]->(a:Agency)
WHERE a.agency_id = $agency OR toLower(a.name) CONTAINS toLower($agency)
WITH c, collect(DISTINCT a.name) AS routed_to, collect(r) AS decisions
RETURN c.rank AS rank, c.score AS score, c.cluster_id AS cluster_id, c.n_reports AS reports,
       c.categories AS categories, routed_to,
       reduce(why = [], d IN decisions | why + d.reasons) AS routing_reasons, c.reason AS reason
ORDER BY c.rank, c.cluster_id
LIMIT $limit;

// name: cluster_reports
// The reports in one cluster in time order (oldest first), for the case file.
// :param cluster_id => 'c_9dccf0f25718'
MATCH (r:Report)-[:IN_CLUSTER]->(:Cluster {cluster_id: $cluster_id})
RETURN r.received_at AS received_at, r.report_id AS report_id, r.category AS category,
       r.reporter_type AS reporter_type, r.description AS description
ORDER BY r.received_at, r.report_id;

// name: cluster_graph
// One cluster as a picture: its reports and everything they mention. Turn on "Connect result
// nodes" in the Browser settings to also see the stated links (LIVES_AT, DIRECTOR_OF, ...).
// :param cluster_id => 'c_9dccf0f25718'
MATCH (c:Cluster {cluster_id: $cluster_id})<-[i:IN_CLUSTER]-(r:Report)-[m:MENTIONS]->(e:Entity)
RETURN c, i, r, m, e;

// name: find_entity
// Find persons, addresses, businesses, vehicles, phones, bank accounts or e-mail addresses by a
// piece of their label (name, street and number, plate, ...), in any case; most mentioned first.
// :param text => 'de vries'
MATCH (e:Entity)
WHERE toLower(e.label) CONTAINS toLower($text)
RETURN e.entity_id AS entity_id, e.entity_type AS type, e.label AS label,
       COUNT { (e)<-[:MENTIONS]-(:Report) } AS mentions
ORDER BY mentions DESC, label, entity_id
LIMIT 25;

// name: around_entity
// Everything around one address, person or other entity: the reports that mention it (with the
// role it had there), the entities it is linked to (LIVES_AT, DIRECTOR_OF, ...), the entities
// mentioned in the same reports, and the clusters of those reports. Draws a graph; the table
// shows kind, id, caption and how each is connected ("via").
// :param entity_id => 'e_address_a172d868fa5dd650'
MATCH (e:Entity {entity_id: $entity_id})<-[m:MENTIONS]-(r:Report)
RETURN 'report' AS kind, r.report_id AS id, r.category AS caption, m.role AS via, r AS node
UNION
MATCH (e:Entity {entity_id: $entity_id})-[l]-(n:Entity)
RETURN 'linked' AS kind, n.entity_id AS id, n.label AS caption, type(l) AS via, n AS node
UNION
MATCH (e:Entity {entity_id: $entity_id})<-[:MENTIONS]-(r:Report)-[:MENTIONS]->(n:Entity)
WHERE n <> e
RETURN 'mentioned with' AS kind, n.entity_id AS id, n.label AS caption, r.report_id AS via, n AS node
UNION
MATCH (e:Entity {entity_id: $entity_id})<-[:MENTIONS]-(:Report)-[:IN_CLUSTER]->(c:Cluster)
RETURN 'cluster' AS kind, c.cluster_id AS id, 'rank ' + toString(c.rank) AS caption, 'IN_CLUSTER' AS via,
       c AS node;

// name: paths_between
// How two entities are connected: all shortest paths (up to 8 steps) over stated links and shared
// reports (entity - report - entity). Clusters and agencies are not used as shortcuts.
// :param from_id => 'e_person_223254b7f36e146b'
// :param to_id => 'e_address_a172d868fa5dd650'
MATCH (a:Entity {entity_id: $from_id}), (b:Entity {entity_id: $to_id})
MATCH p = allShortestPaths((a)-[:MENTIONS|LIVES_AT|LOCATED_AT|OWNER_OF|DIRECTOR_OF|USES|RELATED_TO*..8]-(b))
RETURN p, length(p) AS steps,
       [n IN nodes(p) | coalesce(n.entity_id, n.report_id)] AS ids,
       [n IN nodes(p) | coalesce(n.label, n.category)] AS captions
LIMIT 25;

// name: persons_at_many_addresses
// Persons registered at or reported living at many addresses (adresfraude, katvangers).
// :param min_addresses => 2
MATCH (p:Person)-[:LIVES_AT]->(a:Address)
WITH p, a ORDER BY a.label, a.entity_id
WITH p, collect(DISTINCT a.entity_id) AS address_ids, collect(a.label) AS addresses
WHERE size(address_ids) >= $min_addresses
RETURN p.entity_id AS entity_id, p.label AS person, size(address_ids) AS n_addresses, addresses, address_ids
ORDER BY n_addresses DESC, person, entity_id;

// name: addresses_with_many_persons
// Addresses where many persons live or are registered (overbewoning, spookbewoning).
// :param min_persons => 6
MATCH (p:Person)-[:LIVES_AT]->(a:Address)
WITH a, p ORDER BY p.label, p.entity_id
WITH a, collect(DISTINCT p.entity_id) AS person_ids, collect(p.label) AS persons
WHERE size(person_ids) >= $min_persons
RETURN a.entity_id AS entity_id, a.label AS address, size(person_ids) AS n_persons, persons, person_ids
ORDER BY n_persons DESC, address, entity_id;

// name: businesses_sharing_a_director
// Businesses that share a director (bestuurder, dga, ...): per director, the businesses they run
// (malafide ondernemingen, katvangers).
// :param min_businesses => 2
MATCH (p:Person)-[:DIRECTOR_OF]->(b:Business)
WITH p, b ORDER BY b.label, b.entity_id
WITH p, collect(DISTINCT b.entity_id) AS business_ids, collect(b.label) AS businesses
WHERE size(business_ids) >= $min_businesses
RETURN p.entity_id AS director_id, p.label AS director, size(business_ids) AS n_businesses, businesses,
       business_ids
ORDER BY n_businesses DESC, director, director_id;
