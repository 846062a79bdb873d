"""What a twin's layers are made of on AWS: Lambda functions (one per payload function, one
processor per device), IoT Core, DynamoDB, S3, EventBridge schedules, Step Functions, IoT
TwinMaker and Amazon Managed Grafana."""

from __future__ import annotations

from shared.contracts import (
    FUNCTIONS,
    Function,
    Output,
    Setting,
    StorageKey,
    device_credentials_output,
)
from shared.naming import AzureNaming
from shared.plan.cloud import CloudPlanner, MoverSchedule, StorePairs
from shared.plan.drafts import Hosted
from shared.resources import UserCodeRef
from shared.resources.aws import (
    AwsGrafanaConfig,
    AwsGrafanaDatasourceConfig,
    AwsIotDeviceConfig,
    AwsResourceGroupConfig,
    ConstantProperty,
    DynamoDbTableConfig,
    IotTopicRuleConfig,
    LambdaConfig,
    S3BucketConfig,
    ScheduleConfig,
    StepFunctionConfig,
    TwinMakerComponent,
    TwinMakerComponentTypeConfig,
    TwinMakerEntitiesConfig,
    TwinMakerEntity,
    TwinMakerWorkspaceConfig,
)
from shared.spec import TwinMakerNode
from shared.validation import Problem, SpecError

LAMBDA_RUNTIME = "python3.12"
RESOURCE_GROUP = "aws/setup/resource-group"
STATE_MACHINE_DEFINITION = "state_machines/aws_step_function.json"
DATASOURCE_PLUGIN = "marcusolsson-json-datasource"


class AwsPlanner(CloudPlanner):
    provider = "aws"

    @property
    def region(self) -> str:
        return self.d.spec.clouds.aws.region

    # -- hosting ---------------------------------------------------------------------------

    def function(self, hosted: Hosted) -> str:
        d = self.d
        short = hosted.short or str(hosted.function)
        name = hosted.cloud_name or d.aws.function(short)
        config = LambdaConfig(
            name=name,
            region=self.region,
            role_name=d.aws.role(short) if hosted.cloud_name is None else hosted.cloud_name,
            package=hosted.function,
            runtime=LAMBDA_RUNTIME,
            trigger=FUNCTIONS[hosted.function].trigger,
            environment=d.environment(hosted),
            function_url=hosted.public_url is not None,
            device_id=hosted.device_id,
            twin_update=hosted.twin_update,
            user_function=hosted.user_function,
            path_to_code=hosted.path_to_code,
            user_code=hosted.user_code,
        )
        outputs = [str(p) for p in (hosted.public_url, *hosted.produces) if p is not None]
        return d.add("aws", hosted.layer, short, "lambda", config, [RESOURCE_GROUP, *hosted.needs], outputs).id

    def store_settings(self, tier: str) -> StorePairs:
        return {
            "hot": [(Output.DYNAMODB_TABLE_NAME, Setting.DYNAMODB_TABLE_NAME)],
            "cold": [(Output.COLD_S3_BUCKET_NAME, Setting.COLD_S3_BUCKET_NAME)],
            "archive": [(Output.ARCHIVE_S3_BUCKET_NAME, Setting.ARCHIVE_S3_BUCKET_NAME)],
        }[tier]

    # -- layers ----------------------------------------------------------------------------

    def setup(self) -> None:
        d = self.d
        d.add("aws", "setup", "resource-group", "resource-group", AwsResourceGroupConfig(
            name=d.aws.resource_group(), region=self.region,
            tags={"DigitalTwin": d.twin, "Project": "twin-control-plane"}))

    def layer_1(self, target: Function) -> None:
        """IoT Core: a thing, certificate and policy per device; a topic rule to the dispatcher."""
        d = self.d
        dispatcher = self.function(Hosted("L1", Function.DISPATCHER, environment={Setting.TARGET_FUNCTION: str(target)}))
        topic = d.aws.iot_topic()
        d.add("aws", "L1", "iot-rule", "iot-topic-rule", IotTopicRuleConfig(
            name=d.aws.iot_rule(), region=self.region, topic=topic, sql=f"SELECT * FROM '{topic}'",
            function=d.aws.function(str(Function.DISPATCHER))), needs=[dispatcher], produces=[Output.IOT_ENDPOINT])
        for device in d.spec.devices:
            d.add("aws", "L1", f"device-{device.id}", "iot-device", AwsIotDeviceConfig(
                name=d.aws.iot_thing(device.id), region=self.region, device_id=device.id,
                policy_name=d.aws.iot_policy(device.id), topic=topic),
                needs=[RESOURCE_GROUP], produces=[device_credentials_output(device.id)])

    def processors(self) -> None:
        """One processor Lambda per device, invoked by name (`{twin}-{device}-processor`); its
        package carries the device's own `process` when the bundle has one."""
        for device in self.d.spec.devices:
            code = self.d.processor_code(device.id)
            # Resource ids are prefixed by kind (`processor-`, `event-action-`) so no device
            # id or user function name can collide with another resource.
            self.function(Hosted("L2", Function.PROCESSOR, short=f"processor-{device.id}",
                                 cloud_name=self.d.aws.function(f"{device.id}-processor"), device_id=device.id,
                                 user_code=(code,) if code else ()))

    def workflow(self) -> tuple[Output, Setting]:
        d = self.d
        d.add("aws", "L2", "lambda-chain", "step-function", StepFunctionConfig(
            name=d.aws.state_machine(), region=self.region, definition=STATE_MACHINE_DEFINITION),
            needs=[RESOURCE_GROUP], produces=[Output.LAMBDA_CHAIN_STATE_MACHINE_ARN])
        return Output.LAMBDA_CHAIN_STATE_MACHINE_ARN, Setting.LAMBDA_CHAIN_STATE_MACHINE_ARN

    def feedback_channel(self) -> tuple[Output, Setting]:
        return Output.IOT_ENDPOINT, Setting.IOT_ENDPOINT

    def event_action(self, user_function: str, path_to_code: str | None, spec_path: str,
                     code: UserCodeRef | None) -> None:
        """A Lambda per action (`{twin}-{functionName}`), invoked by the event checker."""
        # The user names the Lambda: a clash is reported on that path.
        rid = self.function(Hosted("L2", Function.EVENT_ACTION, short=f"event-action-{user_function}",
                                   cloud_name=self.d.aws.event_action(user_function),
                                   user_function=user_function, path_to_code=path_to_code,
                                   user_code=(code,) if code else ()))
        self.d.user_named[rid] = spec_path

    def hot_store(self) -> None:
        d = self.d
        d.add("aws", "L3_hot", "hot-table", "dynamodb-table", DynamoDbTableConfig(
            name=d.aws.hot_table(), region=self.region, hash_key=str(StorageKey.PARTITION),
            range_key=str(StorageKey.SORT), billing_mode="PAY_PER_REQUEST"),
            needs=[RESOURCE_GROUP], produces=[Output.DYNAMODB_TABLE_NAME])

    def cold_store(self) -> None:
        d = self.d
        d.add("aws", "L3_cold", "cold-bucket", "s3-bucket", S3BucketConfig(
            name=d.aws.cold_bucket(), region=self.region, storage_class="STANDARD_IA"),
            needs=[RESOURCE_GROUP], produces=[Output.COLD_S3_BUCKET_NAME])

    def archive_store(self) -> None:
        d = self.d
        d.add("aws", "L3_archive", "archive-bucket", "s3-bucket", S3BucketConfig(
            name=d.aws.archive_bucket(), region=self.region, storage_class="DEEP_ARCHIVE"),
            needs=[RESOURCE_GROUP], produces=[Output.ARCHIVE_S3_BUCKET_NAME])

    def mover(self, layer: str, function: Function, schedule: MoverSchedule) -> str:
        """The mover Lambda and the EventBridge rule that runs it."""
        d = self.d
        mover = self.function(Hosted(layer, function))
        d.add("aws", layer, f"{function}-schedule", "schedule", ScheduleConfig(
            name=d.aws.schedule_rule(str(function)), region=self.region, expression=schedule.aws_cron,
            function=d.aws.function(str(function))), needs=[mover])
        return mover

    def layer_4(self) -> None:
        """IoT TwinMaker: a workspace on its bucket, a component type per device whose readers are
        the hot readers (or, with hot storage elsewhere, forwarders to the remote ones), and the
        entity tree of the spec."""
        d = self.d
        bucket = d.add("aws", "L4", "twinmaker-bucket", "s3-bucket", S3BucketConfig(
            name=d.aws.twinmaker_bucket(), region=self.region, storage_class="STANDARD"), needs=[RESOURCE_GROUP])
        ws = d.add("aws", "L4", "twinmaker-workspace", "twinmaker-workspace", TwinMakerWorkspaceConfig(
            name=d.aws.twinmaker_workspace(), region=self.region, role_name=d.aws.role("twinmaker"),
            bucket=bucket.name), needs=[bucket.id], produces=[Output.TWINMAKER_WORKSPACE_NAME])
        if d.placement["L3_hot"] == "aws":
            reader, last = Output.HOT_READER_FUNCTION_ARN, Output.HOT_READER_LAST_ENTRY_FUNCTION_ARN
        else:
            reader, last = Output.DT_READER_FUNCTION_ARN, Output.DT_READER_LAST_ENTRY_FUNCTION_ARN
            for fn, url_out, setting, arn in (
                (Function.DT_READER, Output.HOT_READER_URL, Setting.REMOTE_READER_URL, reader),
                (Function.DT_READER_LAST_ENTRY, Output.HOT_READER_LAST_ENTRY_URL,
                 Setting.REMOTE_READER_LAST_ENTRY_URL, last),
            ):
                host = self.function(Hosted("L4", fn, produces=(arn,)))
                d.wire(url_out, host, setting)
                d.wire_token(host, receiver=False)
        component_ids: list[str] = []
        for device in d.spec.devices:
            ct = d.add("aws", "L4", f"component-type-{device.id}", "twinmaker-component-type",
                       TwinMakerComponentTypeConfig(
                           name=d.aws.component_type(device.id), region=self.region, workspace=ws.name,
                           device_id=device.id,
                           properties={p.name: p.data_type for p in device.properties},
                           const_properties={c.name: ConstantProperty(data_type=c.data_type, value=c.value)
                                             for c in device.const_properties}),
                       needs=[ws.id])
            d.wire(reader, ct.id, Setting.DATA_READER_FUNCTION_ARN)
            d.wire(last, ct.id, Setting.LAST_ENTRY_READER_FUNCTION_ARN)
            component_ids.append(ct.id)
        entities = tuple(self._entity(node, f"hierarchy.aws[{i}]") for i, node in enumerate(d.spec.hierarchy.aws or []))
        d.add("aws", "L4", "twinmaker-entities", "twinmaker-entities", TwinMakerEntitiesConfig(
            name=ws.name, region=self.region, workspace=ws.name, entities=entities), needs=[ws.id, *component_ids])

    def _entity(self, node: TwinMakerNode, path: str) -> TwinMakerEntity:
        """One entity of the spec's tree, its component nodes bound to their device's type."""
        if node.type != "entity" or not node.id:
            raise SpecError([Problem(path, "the tree's top level and every parent must be an entity with an id")])
        components: list[TwinMakerComponent] = []
        children: list[TwinMakerEntity] = []
        for j, child in enumerate(node.children):
            if child.type == "entity":
                children.append(self._entity(child, f"{path}.children[{j}]"))
                continue
            device = child.device_id()
            name = child.name or child.iot_device_id
            if device is None or name is None:
                raise SpecError([Problem(f"{path}.children[{j}]", "a component needs iotDeviceId (or a name equal "
                                                                   "to a device id)")])
            components.append(TwinMakerComponent(
                name=name, component_type_id=child.component_type_id or self.d.aws.component_type(device)))
        return TwinMakerEntity(entity_id=node.id, name=node.name or node.id, components=tuple(components),
                               children=tuple(children))

    def layer_5(self) -> str:
        d = self.d
        graf = d.add("aws", "L5", "grafana", "grafana", AwsGrafanaConfig(
            name=d.aws.grafana_workspace(), region=self.region, role_name=d.aws.role("grafana"),
            account_access_type="CURRENT_ACCOUNT", authentication_providers=("AWS_SSO",),
            permission_type="CUSTOMER_MANAGED"), needs=[RESOURCE_GROUP], produces=[Output.GRAFANA_URL])
        return d.add("aws", "L5", "grafana-datasource", "grafana-datasource", AwsGrafanaDatasourceConfig(
            name=AzureNaming.GRAFANA_DATASOURCE, region=self.region, grafana=graf.name, type=DATASOURCE_PLUGIN,
            access="proxy"), needs=[graf.id]).id
