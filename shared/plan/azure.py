"""What a twin's layers are made of on Azure: one Function App per layer (hosting all of that
layer's payload functions), IoT Hub with Event Grid, Cosmos DB, blob containers, Digital Twins,
Managed Grafana, and the identity, storage and role assignments they share."""

from __future__ import annotations

import json

from shared.contracts import (
    COSMOS_PARTITION_KEY_PATH,
    FUNCTIONS,
    USER_CODE_FUNCTIONS,
    Function,
    Output,
    Setting,
    TwinUpdatePath,
    device_credentials_output,
)
from shared.naming import AzureNaming
from shared.plan.cloud import CloudPlanner, MoverSchedule, StorePairs
from shared.plan.drafts import Draft, Drafts, FunctionAppDraft, Hosted
from shared.resources import UserCodeRef
from shared.resources.azure import (
    AppServicePlanConfig,
    AzureGrafanaConfig,
    AzureGrafanaDatasourceConfig,
    AzureIotDeviceConfig,
    AzureResourceGroupConfig,
    BlobContainerConfig,
    CosmosAccountConfig,
    CosmosContainerConfig,
    DigitalTwin,
    DigitalTwinsConfig,
    DtdlModelsConfig,
    EventGridSystemTopicConfig,
    EventSubscriptionConfig,
    FunctionRuntime,
    HostedFunction,
    IdentityConfig,
    IotHubConfig,
    LogicAppConfig,
    ResourceRef,
    RoleAssignmentConfig,
    StorageAccountConfig,
    TwinGraphConfig,
    TwinRelationship,
)

# Built-in Azure role definition ids (the same GUID in every tenant, from Azure's built-in roles list).
ROLE_IOT_HUB_DATA_CONTRIBUTOR = "4fc6c259-987e-4a07-842e-c321cc9d413f"
ROLE_IOT_HUB_REGISTRY_CONTRIBUTOR = "4ea46cd5-c1b2-4a8e-910b-273211f9ce47"
ROLE_ADT_DATA_OWNER = "bcd981a7-7f74-457b-83e1-cceb9e632ffe"

PYTHON_VERSION = "3.11"
RESOURCE_GROUP = "azure/setup/resource-group"
IDENTITY = "azure/setup/identity"
STORAGE_ACCOUNT = "azure/setup/storage-account"
DEVICE_TELEMETRY = "Microsoft.Devices.DeviceTelemetry"
LOGIC_APP_DEFINITION = "state_machines/azure_logic_app.json"
DATASOURCE_PLUGIN = "marcusolsson-json-datasource"


class AzurePlanner(CloudPlanner):
    provider = "azure"

    def __init__(self, drafts: Drafts) -> None:
        super().__init__(drafts)
        self.apps: dict[tuple[str, bool], tuple[Draft, FunctionAppDraft]] = {}
        """(layer, users' code) -> its Function App."""

    @property
    def rg(self) -> str:
        return self.d.az.resource_group()

    @property
    def region(self) -> str:
        return self.d.spec.clouds.azure.region

    # -- hosting ---------------------------------------------------------------------------

    def function(self, hosted: Hosted) -> str:
        """A function joins its layer's Function App (created with the layer's first function);
        users' code runs in the layer's user-functions app (`USER_CODE_FUNCTIONS`)."""
        app, config = self.app(hosted.layer, user=hosted.function in USER_CODE_FUNCTIONS)
        contract = FUNCTIONS[hosted.function]
        name = str(hosted.function) if hosted.short is None else hosted.short
        if any(f.name == name for f in config.functions):
            return app.id  # one function of the app serves every device / action
        config.functions.append(HostedFunction(
            name=name,
            package=hosted.function,
            trigger=contract.trigger,
            # Receivers are called from other clouds and check the inter-cloud token in code.
            auth_level="anonymous" if contract.receiver else ("function" if contract.trigger == "http" else None),
            schedule=hosted.schedule,
            twin_update=hosted.twin_update,
            user_function=hosted.user_function,
            path_to_code=hosted.path_to_code,
        ))
        config.app_settings.update(
            {k: v for k, v in self.d.environment(hosted).items() if k != Setting.DIGITAL_TWIN_INFO})
        app.produces.extend(str(p) for p in (hosted.public_url, *hosted.produces) if p is not None)
        app.needs.extend(hosted.needs)
        return app.id

    def app(self, layer: str, user: bool = False) -> tuple[Draft, FunctionAppDraft]:
        """The layer's Function App (created with its App Service plan by the layer's first
        function) and its configuration in the making. `user`: the layer's user-functions app,
        where the users' own code runs apart from ours (as the original project's
        `user-functions` app did), so a change of their code redeploys only that app."""
        key = (layer, user)
        if key in self.apps:
            return self.apps[key]
        d = self.d
        az = d.spec.clouds.azure
        slot = f"{layer}-user" if user else layer  # names: `{twin}-l2-user-functions`, `{twin}-l2-user-plan`
        prefix = "user-" if user else ""
        plan = d.add("azure", layer, f"{prefix}app-plan", "app-service-plan", AppServicePlanConfig(
            name=d.az.plan(slot), resource_group=self.rg, location=az.region, sku=az.functions_plan),
            needs=[RESOURCE_GROUP])
        settings: dict[str, str] = {str(Setting.DIGITAL_TWIN_INFO): d.info_json}
        if az.functions_plan != "FC1":
            # Flex Consumption takes the runtime from functionAppConfig and rejects these.
            settings[str(Setting.FUNCTIONS_WORKER_RUNTIME)] = "python"
            settings[str(Setting.FUNCTIONS_EXTENSION_VERSION)] = "~4"
        draft = FunctionAppDraft(
            resource_group=self.rg, location=az.region, plan=plan.name, plan_sku=az.functions_plan,
            runtime=FunctionRuntime(name="python", version=PYTHON_VERSION), identity=d.az.identity(),
            storage_account=d.az.storage_account(), app_settings=settings)
        app = d.add("azure", layer, f"{prefix}function-app", "function-app", draft,
                    needs=[plan.id, IDENTITY, STORAGE_ACCOUNT], name=d.az.function_app(slot))
        d.wire(Output.AZURE_STORAGE_CONNECTION_STRING, app.id, Setting.AZURE_WEBJOBS_STORAGE)
        d.wire(Output.AZURE_IDENTITY_CLIENT_ID, app.id, Setting.AZURE_CLIENT_ID)
        self.apps[key] = (app, draft)
        return app, draft

    def processor_access(self) -> StorePairs:
        return [(Output.PROCESSOR_URL, Setting.PROCESSOR_URL), (Output.PROCESSOR_KEY, Setting.PROCESSOR_KEY)]

    def store_settings(self, tier: str) -> StorePairs:
        return {
            "hot": [
                (Output.COSMOS_DB_ENDPOINT, Setting.COSMOS_DB_ENDPOINT),
                (Output.COSMOS_DB_KEY, Setting.COSMOS_DB_KEY),
                (Output.COSMOS_DB_DATABASE, Setting.COSMOS_DB_DATABASE),
                (Output.COSMOS_DB_CONTAINER, Setting.COSMOS_DB_CONTAINER),
            ],
            "cold": [
                (Output.AZURE_STORAGE_CONNECTION_STRING, Setting.BLOB_CONNECTION_STRING),
                (Output.COLD_STORAGE_CONTAINER, Setting.COLD_STORAGE_CONTAINER),
            ],
            "archive": [
                (Output.AZURE_STORAGE_CONNECTION_STRING, Setting.BLOB_CONNECTION_STRING),
                (Output.ARCHIVE_STORAGE_CONTAINER, Setting.ARCHIVE_STORAGE_CONTAINER),
            ],
        }[tier]

    def role(self, layer: str, short: str, scope: ResourceRef, roles: tuple[str, ...], needs: list[str]) -> Draft:
        """Roles for the twin's identity (its principal is wired in) on `scope`."""
        d = self.d
        draft = d.add("azure", layer, short, "role-assignment", RoleAssignmentConfig(
            name=f"{d.az.identity()}@{scope.name}", resource_group=self.rg, scope=scope, role_definition_ids=roles,
            principal_type="ServicePrincipal"), needs=needs)
        d.wire(Output.AZURE_IDENTITY_PRINCIPAL_ID, draft.id, Setting.PRINCIPAL_ID)
        return draft

    # -- layers ----------------------------------------------------------------------------

    def setup(self) -> None:
        """The resource group, the identity every app runs as, and the storage account."""
        d = self.d
        az = d.spec.clouds.azure
        rg = d.add("azure", "setup", "resource-group", "resource-group", AzureResourceGroupConfig(
            name=self.rg, location=az.region, subscription_id=az.subscription_id, tags={"DigitalTwin": d.twin}))
        d.add("azure", "setup", "identity", "identity", IdentityConfig(
            name=d.az.identity(), resource_group=rg.name, location=az.region), needs=[rg.id],
            produces=[Output.AZURE_IDENTITY_CLIENT_ID, Output.AZURE_IDENTITY_PRINCIPAL_ID])
        d.add("azure", "setup", "storage-account", "storage-account", StorageAccountConfig(
            name=d.az.storage_account(), resource_group=rg.name, location=az.region, sku="Standard_LRS",
            kind="StorageV2", https_only=True, minimum_tls_version="TLS1_2"),
            needs=[rg.id], produces=[Output.AZURE_STORAGE_CONNECTION_STRING])

    def layer_1(self, target: Function) -> None:
        """IoT Hub (the identity gets its data roles), its Event Grid system topic delivering
        telemetry to the dispatcher, and a registry identity per device."""
        d = self.d
        az = d.spec.clouds.azure
        hub = d.add("azure", "L1", "iot-hub", "iot-hub", IotHubConfig(
            name=d.az.iot_hub(), resource_group=self.rg, location=az.iothub_region, sku="S1", capacity=1),
            needs=[RESOURCE_GROUP], produces=[Output.IOT_HUB_SERVICE_CONNECTION_STRING])
        self.role("L1", "iot-hub-role-assignment", ResourceRef(kind="iot-hub", name=hub.name),
                  (ROLE_IOT_HUB_DATA_CONTRIBUTOR, ROLE_IOT_HUB_REGISTRY_CONTRIBUTOR), [hub.id, IDENTITY])
        app = self.function(Hosted("L1", Function.DISPATCHER, environment={Setting.TARGET_FUNCTION: str(target)}))
        if target == Function.PROCESSOR:
            for output, setting in self.processor_access():
                d.wire(output, app, setting)
        topic = d.add("azure", "L1", "iot-hub-events", "eventgrid-system-topic", EventGridSystemTopicConfig(
            name=d.az.iot_system_topic(), resource_group=self.rg, location=az.iothub_region,
            source=ResourceRef(kind="iot-hub", name=hub.name), topic_type="Microsoft.Devices.IoTHubs"),
            needs=[hub.id])
        d.add("azure", "L1", "dispatcher-subscription", "event-subscription", EventSubscriptionConfig(
            name=d.az.event_subscription("dispatcher"), resource_group=self.rg, system_topic=topic.name,
            function_app=d.az.function_app("L1"), function=Function.DISPATCHER,
            included_event_types=(DEVICE_TELEMETRY,)), needs=[topic.id, app])
        for device in d.spec.devices:
            d.add("azure", "L1", f"device-{device.id}", "iot-device", AzureIotDeviceConfig(
                name=d.az.iot_device(device.id), resource_group=self.rg, device_id=device.id, hub=hub.name,
                auth="sas"), needs=[hub.id], produces=[device_credentials_output(device.id)])

    def processors(self) -> None:
        """One `processor` function in the L2 app runs every device's processing; a device with
        its own code is processed by `user-processor` in the user-functions app, which the
        processor calls before persisting."""
        d = self.d
        l2 = self.function(Hosted("L2", Function.PROCESSOR, produces=(Output.PROCESSOR_URL, Output.PROCESSOR_KEY)))
        _, config = self.app("L2")
        config.processors = tuple(device.id for device in d.spec.devices)
        codes = [code for code in (d.processor_code(device.id) for device in d.spec.devices) if code is not None]
        if not codes:
            return
        self.function(Hosted("L2", Function.USER_PROCESSOR,
                                    produces=(Output.USER_PROCESSOR_URL, Output.USER_FUNCTIONS_KEY)))
        _, user_config = self.app("L2", user=True)
        user_config.user_code.extend(codes)
        config.app_settings[Setting.USER_PROCESSOR_DEVICES] = json.dumps(sorted(c.name for c in codes))
        d.wire(Output.USER_PROCESSOR_URL, l2, Setting.USER_PROCESSOR_URL)
        d.wire(Output.USER_FUNCTIONS_KEY, l2, Setting.USER_FUNCTIONS_KEY)

    def workflow(self) -> tuple[Output, Setting]:
        d = self.d
        d.add("azure", "L2", "logic-app", "logic-app", LogicAppConfig(
            name=d.az.logic_app(), resource_group=self.rg, location=self.region, definition=LOGIC_APP_DEFINITION),
            needs=[RESOURCE_GROUP], produces=[Output.LOGIC_APP_TRIGGER_URL])
        return Output.LOGIC_APP_TRIGGER_URL, Setting.LOGIC_APP_TRIGGER_URL

    def feedback_channel(self) -> tuple[Output, Setting]:
        return Output.IOT_HUB_SERVICE_CONNECTION_STRING, Setting.IOT_HUB_SERVICE_CONNECTION_STRING

    def event_action(self, user_function: str, path_to_code: str | None, spec_path: str,
                     code: UserCodeRef | None) -> None:
        """`event-action` in the user-functions app runs every action (by `?name=`); the event
        checker in the L2 app calls it with the app's key."""
        d = self.d
        self.function(Hosted("L2", Function.EVENT_ACTION,
                                    produces=(Output.EVENT_ACTION_URL, Output.USER_FUNCTIONS_KEY)))
        _, user_config = self.app("L2", user=True)
        if code is not None:
            user_config.user_code.append(code)
        l2, _ = self.app("L2")
        d.wire(Output.EVENT_ACTION_URL, l2.id, Setting.EVENT_ACTION_URL)
        d.wire(Output.USER_FUNCTIONS_KEY, l2.id, Setting.USER_FUNCTIONS_KEY)

    def hot_store(self) -> None:
        """A serverless Cosmos DB account and its container, partitioned by device."""
        d = self.d
        acct = d.add("azure", "L3_hot", "cosmos-account", "cosmos-account", CosmosAccountConfig(
            name=d.az.cosmos_account(), resource_group=self.rg, location=self.region,
            capabilities=("EnableServerless",), consistency="Session"),
            needs=[RESOURCE_GROUP], produces=[Output.COSMOS_DB_ENDPOINT, Output.COSMOS_DB_KEY])
        d.add("azure", "L3_hot", "cosmos-container", "cosmos-container", CosmosContainerConfig(
            name=d.az.COSMOS_CONTAINER, resource_group=self.rg, account=acct.name, database=d.az.COSMOS_DATABASE,
            partition_key_path=COSMOS_PARTITION_KEY_PATH, default_ttl=-1),
            needs=[acct.id], produces=[Output.COSMOS_DB_DATABASE, Output.COSMOS_DB_CONTAINER])

    def cold_store(self) -> None:
        d = self.d
        d.add("azure", "L3_cold", "cold-container", "blob-container", BlobContainerConfig(
            name=d.az.COLD_CONTAINER, resource_group=self.rg, storage_account=d.az.storage_account(),
            access_tier="Cool", public_access="None"),
            needs=[STORAGE_ACCOUNT], produces=[Output.COLD_STORAGE_CONTAINER])

    def archive_store(self) -> None:
        d = self.d
        d.add("azure", "L3_archive", "archive-container", "blob-container", BlobContainerConfig(
            name=d.az.ARCHIVE_CONTAINER, resource_group=self.rg, storage_account=d.az.storage_account(),
            access_tier="Archive", public_access="None"),
            needs=[STORAGE_ACCOUNT], produces=[Output.ARCHIVE_STORAGE_CONTAINER])

    def mover(self, layer: str, function: Function, schedule: MoverSchedule) -> str:
        """A timer function of the layer's app (Azure Functions schedules it itself)."""
        return self.function(Hosted(layer, function, schedule=schedule.azure_ncrontab))

    def layer_4(self) -> None:
        """Digital Twins (the identity and the deployer get its data role), the hierarchy's models
        and twins, and on the all-Azure path the `adt-updater` fed by the hub's events."""
        d = self.d
        az = d.spec.clouds.azure
        adt = d.add("azure", "L4", "digital-twins", "digital-twins", DigitalTwinsConfig(
            name=d.az.digital_twins(), resource_group=self.rg, location=az.digital_twin_region),
            needs=[RESOURCE_GROUP], produces=[Output.ADT_INSTANCE_URL])
        role = self.role("L4", "adt-role-assignment", ResourceRef(kind="digital-twins", name=adt.name),
                         (ROLE_ADT_DATA_OWNER,), [adt.id, IDENTITY])
        hierarchy = d.spec.hierarchy.azure
        models = d.add("azure", "L4", "dtdl-models", "dtdl-models", DtdlModelsConfig(
            name=adt.name, resource_group=self.rg, instance=adt.name,
            models=tuple(hierarchy.models) if hierarchy else ()),
            # The deployer writes through the data plane: its role must exist first.
            needs=[adt.id, role.id])
        twins = tuple(DigitalTwin(twin_id=t.dt_id, model=t.metadata.model,
                                  properties={k: v for k, v in t.initial_properties().items() if v is not None})
                      for t in hierarchy.twins) if hierarchy else ()
        relationships = tuple(TwinRelationship(source_id=r.source_id, relationship_id=r.stable_id(),
                                               target_id=r.target_id, name=r.name)
                              for r in hierarchy.relationships) if hierarchy else ()
        d.add("azure", "L4", "twin-graph", "twin-graph", TwinGraphConfig(
            name=adt.name, resource_group=self.rg, instance=adt.name, twins=twins, relationships=relationships),
            needs=[models.id])
        if d.path == TwinUpdatePath.EVENT_GRID_ADT_UPDATER:
            app = self.function(Hosted("L4", Function.ADT_UPDATER, needs=(role.id,)))
            d.wire(Output.ADT_INSTANCE_URL, app, Setting.ADT_INSTANCE_URL)
            d.add("azure", "L4", "adt-updater-subscription", "event-subscription", EventSubscriptionConfig(
                name=d.az.event_subscription("adt-updater"), resource_group=self.rg,
                system_topic=d.az.iot_system_topic(), function_app=d.az.function_app("L4"),
                function=Function.ADT_UPDATER, included_event_types=(DEVICE_TELEMETRY,)),
                needs=["azure/L1/iot-hub-events", app])

    def layer_5(self) -> str:
        d = self.d
        graf = d.add("azure", "L5", "grafana", "grafana", AzureGrafanaConfig(
            name=d.az.grafana(), resource_group=self.rg, location=self.region, sku="Standard", api_key="Enabled"),
            needs=[RESOURCE_GROUP], produces=[Output.GRAFANA_URL])
        return d.add("azure", "L5", "grafana-datasource", "grafana-datasource", AzureGrafanaDatasourceConfig(
            name=AzureNaming.GRAFANA_DATASOURCE, resource_group=self.rg, grafana=graf.name, type=DATASOURCE_PLUGIN,
            access="proxy"), needs=[graf.id]).id
